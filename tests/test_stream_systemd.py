"""A real ``edgecodec edge`` process under a stand-in for systemd: its notify socket and watchdog."""
from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from tests.stream_support import REPO, SECRET, edgecodec_cmd

pytestmark = pytest.mark.timeout(90)


def test_edge_process_reports_ready_feeds_the_watchdog_and_says_stopping_on_sigterm(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(60)
    (tmp_path / "secret").write_text(SECRET)
    proc = subprocess.Popen(
        edgecodec_cmd("edge", "--source", "synthetic", "--width", 64, "--height", 48, "--fps", 5,
                      "--server", "tcp://127.0.0.1:9", "--secret-file", tmp_path / "secret"),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "edge.log", "wb"),
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1500000",
             "STATE_DIRECTORY": str(tmp_path / "state"), "JOURNAL_STREAM": ""})
    try:
        messages = [sock.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        sock.settimeout(5)
        pings = [sock.recv(4096).decode() for _ in range(3)]
        assert pings.count("WATCHDOG=1") >= 2  # no server, yet healthy: the spool takes the frames
        proc.send_signal(signal.SIGTERM)
        while not sock.recv(4096).decode().startswith("STOPPING=1"):
            pass
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    assert (tmp_path / "state" / "spool").is_dir()
