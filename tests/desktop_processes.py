"""The real ``edgecodec serve`` and ``edgecodec edge`` as child processes, for end-to-end desktop tests."""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

EXE = [sys.executable, "-m", "edgecodec"]
SECRET = "0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}: {_tail(proc)}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _tail(proc) -> str:
    try:
        return proc.stderr.read()[-3000:] if proc.stderr else ""
    except (OSError, ValueError):
        return ""


def start_server(tmp: pathlib.Path, cameras=("cam",), *extra: str) -> tuple[subprocess.Popen, int]:
    """``edgecodec serve`` on a free loopback port, with one secret per camera; returns (process, port)."""
    secrets = tmp / "secrets.toml"
    secrets.write_text("[cameras]\n" + "".join(f'"{c}" = "{SECRET}"\n' for c in cameras))
    port_file = tmp / "server.port"
    proc = subprocess.Popen([*EXE, "serve", "--secrets", str(secrets), "--listen", "127.0.0.1:0",
                             "--port-file", str(port_file), "-q", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(port_file.exists, 120, "the server to listen", proc)
    return proc, int(port_file.read_text())


def start_edge(tmp: pathlib.Path, port: int, camera_id: str = "cam", width: int = 64, height: int = 48,
               fps: float = 20, *extra: str) -> subprocess.Popen:
    secret = tmp / f"{camera_id}.secret"
    secret.write_text(SECRET + "\n")
    return subprocess.Popen([*EXE, "edge", "--camera-id", camera_id, "--source", "synthetic",
                             "--server", f"tcp://127.0.0.1:{port}", "--secret-file", str(secret),
                             "--spool-dir", str(tmp / f"spool-{camera_id}"), "--width", str(width),
                             "--height", str(height), "--fps", str(fps), "--quality", "1", "--threads", "1",
                             "--status-interval", "0", "-q", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30) -> int:
    """Signal a child we started and reap it (SIGKILL if it does not stop in time)."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
