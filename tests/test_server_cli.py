"""Command-line conventions of ``serve`` and ``edge``: help, usage errors (2), failures (1) on one line."""
from __future__ import annotations

import subprocess

import pytest

from edgecodec.cli import main
from tests.stream_support import REPO, edgecodec_cmd


@pytest.mark.parametrize("command", ["serve", "edge", "demo"])
def test_help_exits_0_and_describes_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "Exit codes" in capsys.readouterr().out


def test_serve_without_secrets_is_a_usage_error(capsys):
    assert main(["serve"]) == 2 and "--secrets" in capsys.readouterr().err


def test_serve_with_an_unreadable_secrets_file_fails_with_one_line(tmp_path):
    out = subprocess.run(edgecodec_cmd("serve", "--secrets", tmp_path / "none.toml"), capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("edgecodec serve: error: cannot read secrets file")


def test_show_pin_prints_the_fingerprint_edges_should_pin(tmp_path, capsys):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=t"],
                   check=True, capture_output=True)
    assert main(["serve", "--tls-cert", str(cert), "--show-pin"]) == 0
    pin = capsys.readouterr().out.strip()
    assert pin.startswith("sha256:") and len(pin) == 7 + 64


def test_edge_with_an_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["edge", "--frames-per-second", "3"])
    assert exit_.value.code == 2


def test_live_view_password_and_tls_flags_need_http(capsys):
    assert main(["serve", "--secrets", "x.toml", "--http-users", "v.toml"]) == 2
    assert "need --http" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--http-tls"], "--http-tls needs --tls-cert"),
    (["--http-users", "absent.toml"], "cannot read viewers file"),
])
def test_live_view_configuration_errors_fail_with_one_line(tmp_path, flags, message):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[cameras]\ncam = "0123456789abcdef0123456789abcdef"\n')
    secrets.chmod(0o600)
    out = subprocess.run(edgecodec_cmd("serve", "--secrets", secrets, "--listen", "127.0.0.1:0",
                                       "--http", "127.0.0.1:0", *flags),
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 1
    assert message in out.stderr.strip().splitlines()[-1]
