"""The shipped systemd units and example configuration are valid and keep their promises."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from edgecodec.edge import config as cfg
from tests.stream_support import REPO

UNIT = REPO / "systemd" / "edgecodec-edge.service"


def directives(path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_edge_unit_is_a_notify_service_with_a_watchdog_that_restarts_on_failure():
    d = directives(UNIT)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert int(d["WatchdogSec"][0]) >= 10 and d["Restart"] == ["on-failure"]
    assert d["KillSignal"] == ["SIGTERM"] and int(d["TimeoutStopSec"][0]) > 3 + 5  # drain + margin


def test_edge_unit_sandbox_allows_only_the_state_directory_and_video_devices():
    d = directives(UNIT)
    assert d["DynamicUser"] == ["yes"] and d["ProtectSystem"] == ["strict"]
    assert d["StateDirectory"] == ["edgecodec-edge"] and d["ProtectHome"] == ["yes"]
    assert d["DevicePolicy"] == ["closed"] and d["DeviceAllow"] == ["char-video4linux rw"]
    assert d["NoNewPrivileges"] == ["yes"] and d["CapabilityBoundingSet"] == [""]


def test_edge_unit_command_line_is_accepted_by_the_edge_command():
    from edgecodec.cli import build_parser

    argv = directives(UNIT)["ExecStart"][0].split()[1:]
    args = build_parser().parse_args(argv)
    assert args.command == "edge" and args.config == "/etc/edgecodec/edge.toml"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", ["edgecodec-edge.service", "edgecodec-server.service"])
def test_units_pass_systemd_analyze_verify(tmp_path, name):
    # verify insists that ExecStart exists on this machine; point it at a binary that does.
    (tmp_path / name).write_text((REPO / "systemd" / name).read_text().replace("/usr/local/bin/edgecodec", "/bin/true"))
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_example_configuration_loads_and_uses_the_credential_and_state_directory():
    config = cfg.load(str(REPO / "systemd" / "edge.toml.example"))
    assert config.link.secret_file.startswith("/run/credentials/edgecodec-edge.service/")
    assert str(cfg.spool_dir(config, {"STATE_DIRECTORY": "/var/lib/edgecodec-edge"})) == "/var/lib/edgecodec-edge"
