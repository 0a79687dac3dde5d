"""The server's option table: one declaration per option, a TOML file (--config) with flags over it,
the flags it had before the table still working, one-line errors for a bad file, and systemd readiness."""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import threading

import pytest

from edgecodec.cli import main
from edgecodec.errors import ConfigError
from edgecodec.sdnotify import Notifier
from edgecodec.server import config as scfg
from edgecodec.server.service import EdgeServer, ServerConfig
from edgecodec.transport.base import DEFAULT_PORT
from tests.stream_support import SECRET, write_secrets

# Every flag ``edgecodec serve`` took before the option table (the CLI's contract with scripts and units).
FLAGS_BEFORE_THE_TABLE = [
    "--secrets", "--listen", "--no-listen", "--tls-cert", "--tls-key", "--show-pin", "--mqtt", "--mqtt-ca",
    "--state-dir", "--max-connections", "--max-frame-kb", "--idle-timeout", "--record", "--record-rotate-mb",
    "--record-rotate-minutes", "--retain-days", "--retain-gb", "--http", "--http-users", "--http-tls",
    "--model", "--decode-threads", "--decoder", "--frame-log", "--probe", "--probe-reference",
    "--probe-camera", "--probe-warmup", "--port-file", "--status-interval", "--duration", "--json", "--quiet",
]


def parse(*argv):
    parser = argparse.ArgumentParser()
    scfg.add_arguments(parser)
    return parser.parse_args(list(argv))


def serve_parser_flags() -> set:
    from edgecodec.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for action in sub.choices["serve"]._actions for s in action.option_strings}


def test_every_flag_serve_had_before_the_table_still_exists():
    missing = set(FLAGS_BEFORE_THE_TABLE) - serve_parser_flags()
    assert not missing


def test_every_option_has_a_distinct_flag_help_and_a_valid_default():
    options = list(scfg.TABLE.options())
    flags = [f.metadata["flag"] for _, f in options]
    assert len(flags) == len(set(flags)) and all(f.metadata["help"] for _, f in options)
    for section, f in options:
        check = f.metadata["check"]
        assert check is None or check(getattr(getattr(scfg.DEFAULTS, section), f.name)) is None, f.name


def test_the_default_port_is_the_transport_default_everywhere():
    assert scfg.DEFAULTS.ingest.listen.endswith(f":{DEFAULT_PORT}")
    assert ServerConfig("s.toml").listen == scfg.DEFAULTS.ingest.listen


def test_file_values_are_used_and_flags_override_them(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text('[ingest]\nsecrets = "/etc/s.toml"\nlisten = "127.0.0.1:9000"\nmax_frame_kb = 64\n'
                    '[record]\ndir = "/srv/rec"\nretain_days = 30\n[probe]\nenabled = true\ncameras = ["a", "b"]\n')
    config = scfg.server_config(scfg.load(str(path)))
    assert (config.secrets_file, config.listen, config.limits.max_packet) == ("/etc/s.toml", "127.0.0.1:9000", 64 << 10)
    assert (config.record, config.retain_days, config.probe, config.probe_cameras) == ("/srv/rec", 30.0, True, ["a", "b"])
    over = scfg.server_config(scfg.load(str(path), parse("--listen", "0.0.0.0:1", "--probe-camera", "c",
                                                         "--no-probe", "--retain-days", "2")))
    assert (over.listen, over.probe_cameras, over.probe, over.retain_days) == ("0.0.0.0:1", ["c"], False, 2.0)


def test_no_listen_and_empty_values_mean_off():
    config = scfg.server_config(scfg.load(None, parse("--secrets", "s", "--no-listen", "--mqtt", "mqtt://b")))
    assert config.listen is None and config.record is None and config.http is None and config.retain_gb is None


@pytest.mark.parametrize("content, message", [
    (b"[ingest]\nsecrets = \"\xff\xfe\"\n", "not UTF-8 text"),
    (b"[ingest\nsecrets = 1\n", "not valid TOML"),
    (b"[ingest]\nlisten = 7878\n", "listen = 7878: must be a string"),
    (b"[ingest]\nlisten = \"nohost\"\n", "must be HOST:PORT"),
    (b"[recrod]\ndir = \"x\"\n", "did you mean [record]?"),
    (b"[decode]\ndecoder = \"fastest\"\n", "must be one of"),
])
def test_a_bad_config_file_fails_with_a_message_and_no_traceback(tmp_path, capsys, content, message):
    path = tmp_path / "server.toml"
    path.write_bytes(content)
    assert main(["serve", "--config", str(path), "--check-config"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("edgecodec serve: error:")


def test_check_config_prints_toml_that_loads_back_to_the_same_configuration(tmp_path, capsys):
    assert main(["serve", "--secrets", "s.toml", "--record", "rec", "--probe-camera", "a", "--check-config"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith("# configuration OK")
    path = tmp_path / "again.toml"
    path.write_text(printed)
    assert scfg.load(str(path)) == scfg.load(None, parse("--secrets", "s.toml", "--record", "rec",
                                                         "--probe-camera", "a"))


def test_a_config_file_without_secrets_is_the_same_usage_error_as_the_flag(tmp_path, capsys):
    path = tmp_path / "server.toml"
    path.write_text("[http]\nlisten = \"127.0.0.1:0\"\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "--secrets" in capsys.readouterr().err


def test_invalid_values_are_all_listed(tmp_path):
    with pytest.raises(ConfigError) as err:
        scfg.load(None, parse("--decode-threads", "0", "--listen", "x"))
    assert "--decode-threads" in str(err.value) and "--listen" in str(err.value)


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def test_the_server_tells_systemd_it_is_ready_and_feeds_the_watchdog_until_stopped(tmp_path, notify_socket):
    path, sock = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000", "WATCHDOG_PID": str(os.getpid())}
    secrets = write_secrets(tmp_path, {"cam1": SECRET})
    server = EdgeServer(ServerConfig(secrets_file=str(secrets), listen="127.0.0.1:0", status_interval=0),
                        notifier=Notifier(environ=env))
    holder = {}

    def run():
        async def main_():
            holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
            started.set()
            await server.run(holder["stop"])
        asyncio.run(main_())

    started = threading.Event()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    first = sock.recv(4096).decode()
    assert "READY=1" in first and f"127.0.0.1:{server.address[1]}" in first
    pings = [sock.recv(4096).decode() for _ in range(2)]  # a ping a third of 0.3 s apart
    assert pings == ["WATCHDOG=1", "WATCHDOG=1"]
    holder["loop"].call_soon_threadsafe(holder["stop"].set)
    thread.join(10)
    while True:  # pings sent before the stop may still be queued
        message = sock.recv(4096).decode()
        if message != "WATCHDOG=1":
            break
    assert message.startswith("STOPPING=1")
