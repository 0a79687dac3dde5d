"""Configuration and secret files that are not UTF-8 text: one line on stderr and exit 1, no traceback."""
from __future__ import annotations

import subprocess

import pytest

from tests.stream_support import REPO, SECRET, edgecodec_cmd

pytestmark = pytest.mark.timeout(120)


def private(path, data: bytes):
    path.write_bytes(data)
    path.chmod(0o600)  # no "readable by other users" warning beside the error
    return path


CASES = {
    "edge --config": lambda t, bad: ["edge", "--config", bad, "--spool-dir", t / "spool"],
    "edge --secret-file": lambda t, bad: ["edge", "--secret-file", bad, "--spool-dir", t / "spool",
                                          "--duration", "1"],
    "edge --check-config --secret-file": lambda t, bad: ["edge", "--check-config", "--secret-file", bad,
                                                         "--spool-dir", t / "spool"],
    "serve --secrets": lambda t, bad: ["serve", "--secrets", bad, "--listen", "127.0.0.1:0", "--duration", "1"],
    "serve --http-users": lambda t, bad: ["serve", "--secrets", t / "secrets.toml", "--listen", "127.0.0.1:0",
                                          "--http", "127.0.0.1:0", "--http-users", bad, "--duration", "1"],
}


@pytest.mark.parametrize("case", CASES)
def test_a_file_that_is_not_utf8_is_a_one_line_error_naming_it(tmp_path, case):
    bad = private(tmp_path / "b.toml", b"\xff\xfe")
    private(tmp_path / "secrets.toml", f'[cameras]\ncam1 = "{SECRET}"\n'.encode())
    proc = subprocess.run(edgecodec_cmd(*CASES[case](tmp_path, bad)), cwd=REPO, capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    message = f"{bad}: not UTF-8 text (byte 0xff at offset 0)"
    if case == "edge --check-config --secret-file":  # it lists every problem under one heading
        assert "error: configuration problems:" in proc.stderr and message in proc.stderr, proc.stderr
        return
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"error: {message}"), proc.stderr
