"""The shipped systemd units and example configuration are valid and keep their promises."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from edgecodec.edge import config as cfg
from tests.stream_support import REPO

UNIT = REPO / "systemd" / "edgecodec-edge.service"
TEMPLATE = REPO / "systemd" / "edgecodec-edge@.service"
SERVER_UNIT = REPO / "systemd" / "edgecodec-server.service"
UNITS = ["edgecodec-edge.service", "edgecodec-server.service", "edgecodec-edge@.service"]
# What differs between one camera's unit and the per-camera template: the file names and folders.
PER_INSTANCE = {"Description", "ExecStart", "LoadCredential", "StateDirectory"}
# The edge's sandbox directives that are about its cameras; the server has no devices at all.
DEVICES = {"DeviceAllow", "SupplementaryGroups", "ConfigurationDirectory", "ConfigurationDirectoryMode"}


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


def test_template_unit_runs_one_camera_per_instance_with_the_single_units_sandbox():
    single, template = directives(UNIT), directives(TEMPLATE)
    assert {k: v for k, v in template.items() if k not in PER_INSTANCE} == \
        {k: v for k, v in single.items() if k not in PER_INSTANCE}
    assert template["StateDirectory"] == ["edgecodec-edge/%i"]
    assert template["LoadCredential"] == ["camera-secret:/etc/edgecodec/%i.secret"]
    assert "%i" in template["Description"][0]


def test_template_command_line_selects_the_instances_config_and_credential():
    from edgecodec.cli import build_parser

    argv = directives(TEMPLATE)["ExecStart"][0].replace("%i", "yard").split()[1:]
    args = build_parser().parse_args(argv)
    assert args.command == "edge" and args.config == "/etc/edgecodec/yard.toml"
    assert getattr(args, "link.secret_file") == "${CREDENTIALS_DIRECTORY}/camera-secret"


def test_server_unit_is_a_notify_service_with_a_watchdog_and_the_edge_units_hardening():
    server, edge = directives(SERVER_UNIT), directives(UNIT)
    assert server["Type"] == ["notify"] and server["NotifyAccess"] == ["main"]
    assert int(server["WatchdogSec"][0]) >= 10 and server["Restart"] == ["on-failure"]
    hardening = {k for k in edge if k.startswith(("Protect", "Private", "Restrict", "NoNew", "Capability",
                                                  "Ambient", "Lock", "SystemCall", "UMask", "DevicePolicy",
                                                  "DynamicUser", "StateDirectoryMode"))} - DEVICES
    assert {k: server.get(k) for k in hardening} == {k: edge[k] for k in hardening}
    assert server["PrivateDevices"] == ["yes"]


def test_server_unit_command_line_is_accepted_by_the_serve_command():
    from edgecodec.cli import build_parser
    from edgecodec.server import config as server_config

    argv = directives(SERVER_UNIT)["ExecStart"][0].split()[1:]
    args = build_parser().parse_args(argv)
    options = server_config.load(None, args)
    assert args.command == "serve" and server_config.usage_problem(options) is None


def _unit_copy(tmp_path, name):
    """The unit with ExecStart pointing at a binary that exists here (verify insists); a template
    becomes an instance of it."""
    target = tmp_path / name.replace("@.", "@yard.")
    target.write_text((REPO / "systemd" / name).read_text().replace("/usr/local/bin/edgecodec", "/bin/true"))
    return target


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_units_pass_systemd_analyze_verify(tmp_path, name):
    unit = _unit_copy(tmp_path, name)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_units_exposure_score_is_at_most_2(tmp_path, name):
    unit = _unit_copy(tmp_path, name)
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                         capture_output=True, text=True, timeout=60)
    if "--offline" in out.stderr and out.returncode != 0:
        pytest.skip("this systemd-analyze cannot score unit files offline (systemd < 252)")
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
    assert score and float(score.group(1)) <= 2.0, out.stdout[-2000:]


def test_example_configuration_loads_and_uses_the_credential_and_state_directory():
    config = cfg.load(str(REPO / "systemd" / "edge.toml.example"))
    assert config.link.secret_file.startswith("/run/credentials/edgecodec-edge.service/")
    assert str(cfg.spool_dir(config, {"STATE_DIRECTORY": "/var/lib/edgecodec-edge"})) == "/var/lib/edgecodec-edge"
