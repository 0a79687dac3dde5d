"""A loopback run: the real ``edgecodec serve`` and ``edgecodec edge`` commands in their own processes on
this machine, the edge streaming the synthetic scene to the server, which decodes what it receives to
measure PSNR and capture-to-decoded latency.

Used by ``edgecodec demo`` (``cli/demo.py``) and ``tools/bench_stream.py``. The two sides meet only through
their command lines, a throw-away secret and spool, and the JSON they print, so this module imports
neither ``edge`` nor ``server``.
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time

from edgecodec.errors import EdgecodecError


def _wait_for_file(path: pathlib.Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise EdgecodecError(f"the server exited early (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise EdgecodecError("the server did not start listening in time")
        time.sleep(0.05)


def _reap(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Wait for ``proc``; return its exit code and CPU seconds (user + system)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def run_loopback(duration: float, width: int = 640, height: int = 480, fps: float = 30.0,
                 quality: int = 4, target_kbps: float = 0.0, warmup: float = 1.0,
                 edge_threads: int = 1, decode_threads: int = 1, extra_edge_args: tuple = (),
                 extra_cameras: int = 0, on_listening=None, progress=None, decoder: str = "auto") -> dict:
    """Run server and edge processes for ``duration`` s; return both sides' figures and CPU times.

    By default the edge encodes and the server decodes on one thread each: the two share this machine
    as if each ran on its own one-core machine, and neither's thread pool waits on the other's.

    ``extra_cameras`` adds secrets for cameras ``replay-1``.. that the caller connects itself
    (``on_listening(url, port, secrets)`` is called once the server listens).
    """
    with tempfile.TemporaryDirectory(prefix="edgecodec-demo-") as tmp:
        tmp = pathlib.Path(tmp)
        secret = secrets.token_hex(16)
        cameras = {"demo": secret, **{f"replay-{i}": secrets.token_hex(16) for i in range(1, extra_cameras + 1)}}
        (tmp / "secrets.toml").write_text("[cameras]\n" + "".join(f'{c} = "{s}"\n' for c, s in cameras.items()))
        (tmp / "demo.secret").write_text(secret + "\n")
        port_file = tmp / "port"
        exe = [sys.executable, "-m", "edgecodec"]
        server = subprocess.Popen(
            [*exe, "serve", "--secrets", str(tmp / "secrets.toml"), "--listen", "127.0.0.1:0",
             "--port-file", str(port_file), "--probe", "--probe-camera", "demo", "--probe-reference", "synthetic",
             "--probe-warmup", str(warmup), "--decode-threads", str(decode_threads),
             "--decoder", decoder,
             "--frame-log", str(tmp / "frames.jsonl"), "--json", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        edge = None
        try:
            _wait_for_file(port_file, server, timeout=120)
            port = int(port_file.read_text())
            url = f"tcp://127.0.0.1:{port}"
            if on_listening:
                on_listening(url, port, cameras)
            edge = subprocess.Popen(
                [*exe, "edge", "--camera-id", "demo", "--source", "synthetic", "--server", url,
                 "--secret-file", str(tmp / "demo.secret"), "--spool-dir", str(tmp / "spool"),
                 "--width", str(width), "--height", str(height), "--fps", str(fps),
                 "--quality", str(quality), "--target-kbps", str(target_kbps),
                 "--threads", str(edge_threads), "--duration", str(duration + warmup),
                 "--status-interval", "0", "--json", "-q", *extra_edge_args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            started = time.monotonic()
            while edge.poll() is None and time.monotonic() - started < duration + warmup + 120:
                if progress:
                    progress(time.monotonic() - started, duration + warmup)
                time.sleep(0.25)
            edge_out, edge_err = edge.communicate(timeout=30)
            edge_code = edge.returncode
            server.send_signal(signal.SIGTERM)
            server_code, server_cpu = _reap(server, timeout=30)
            server_out, server_err = server.stdout.read(), server.stderr.read()
        finally:
            for proc in (edge, server):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if edge_code != 0 or server_code != 0:
            raise EdgecodecError(f"edge exited {edge_code}, server exited {server_code}:\n"
                                 f"{edge_err.strip()[-2000:]}\n{server_err.strip()[-2000:]}")
        frames = [json.loads(line) for line in (tmp / "frames.jsonl").read_text().splitlines()]
    sequences = [f["sequence"] for f in frames]
    return {
        "edge": json.loads(edge_out),
        "server": json.loads(server_out),
        "server_process_cpu_s": round(server_cpu, 2),  # including start-up (model loading)
        "frames_in_order": sequences == sorted(set(sequences)),
    }


def summarize(run: dict) -> dict:
    """The headline figures of a loopback run."""
    edge, server = run["edge"], run["server"]
    cam = server["cameras"].get("demo", {})
    probe = server.get("probe", {}).get("demo", {})
    ingest = server["ingest"].get("demo", {})
    uptime = max(server["uptime_s"], 1e-9)
    return {
        "captured": edge["captured"],
        "dropped_at_source": edge["dropped_at_source"],
        "encoded": edge["encoded"],
        "stored": cam.get("frames", 0),
        "duplicates": ingest.get("duplicates", 0),
        "fps": cam.get("fps", 0.0),
        "kbps": cam.get("kbps", 0.0),
        "encoder": edge.get("encoder"),
        "analysis": edge.get("analysis"),
        "encode_ms": edge["encode_ms"],
        "psnr_db": probe.get("psnr_db"),
        "decoded": probe.get("decoded", 0),
        "decoder": probe.get("decoder"),
        "decode_ms": probe.get("decode_ms", {}),
        "latency_received_ms": probe.get("latency_received_ms", {}),
        "latency_decoded_ms": probe.get("latency_decoded_ms", {}),
        "server_cpu_s": server["cpu_s"],  # while serving; run["server_process_cpu_s"] includes start-up
        "server_cpu_percent": round(100 * server["cpu_s"] / uptime, 1),
        "decode_cpu_s": probe.get("decode_cpu_s", 0.0),
        "frames_in_order": run["frames_in_order"],
    }
