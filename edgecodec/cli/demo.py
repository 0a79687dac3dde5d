"""``edgecodec demo``: stream the synthetic scene from an edge process to a server process on loopback.

Both sides are the real commands (``edgecodec serve`` and ``edgecodec edge``) in their own
processes, with a throw-away secret and spool. The server decodes what it receives to measure
PSNR and capture-to-decoded latency. ``run_loopback`` is shared with tools/bench_stream.py.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from edgecodec.errors import EdgecodecError


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="stream the synthetic scene edge -> server on loopback and show the figures",
        description="Start an edgecodec server and an edge process on loopback, stream the synthetic "
                    "test scene for a while, and print frames/s, kbit/s, PSNR and end-to-end latency. "
                    "Exit codes: 0 ok, 1 error, 2 usage.")
    p.add_argument("-d", "--duration", type=float, default=10.0, metavar="S", help="seconds to stream (default 10)")
    p.add_argument("--width", type=int, default=640, help="frame width (default 640)")
    p.add_argument("--height", type=int, default=480, help="frame height (default 480)")
    p.add_argument("--fps", type=float, default=30.0, help="capture rate (default 30)")
    p.add_argument("-q", "--quality", type=int, default=4, help="quality (default 4)")
    p.add_argument("--target-kbps", type=float, default=0.0, metavar="KBPS", help="rate control target instead")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_demo)


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


# Share of captured frames dropped at the source above which the demo says the machine did not keep up.
DROP_SHARE_NOTED = 0.05


def keep_up_note(s: dict, fps: float) -> Optional[str]:
    """None when the edge kept the demo's frame rate; otherwise what fell behind and by how much.

    The edge keeps only the newest frame while the encoder is busy, so a machine slower than the frame
    rate shows up as frames dropped at the source, at an encode time over the frame period; the stream's
    frames/s and the latencies then describe that slower machine, not the codec at ``fps``."""
    captured, dropped = s.get("captured", 0), s.get("dropped_at_source", 0)
    period_ms = 1000.0 / fps
    encode_ms = s.get("encode_ms") or 0.0
    share = dropped / captured if captured else 0.0
    if share <= DROP_SHARE_NOTED and encode_ms <= period_ms:
        return None
    what = (f"this machine did not keep {fps:g} frames/s: {dropped} of {captured} captured frames "
            f"({100 * share:.0f} %) were dropped at the source (the edge keeps only the newest frame "
            f"while the encoder is busy)")
    if encode_ms > period_ms:
        why = (f"encoding takes {encode_ms:.0f} ms a frame against a frame period of {period_ms:.0f} ms "
               f"(at most {1000 / encode_ms:.1f} frames/s here)")
        hint = f"try --fps {max(1, int(1000 / encode_ms * 0.8))} or a smaller --width/--height"
    else:
        why = (f"encoding takes {encode_ms:.0f} ms of the {period_ms:.0f} ms frame period, so the time "
               f"went elsewhere: other processes on the CPU, or the server decoding on the same cores")
        hint = "run it on an idle machine, or try a lower --fps"
    return (f"{what}; {why}. The figures above are for the {s.get('fps', 0.0):.1f} frames/s that got "
            f"through, and the latencies include waiting for a busy CPU; {hint}.")


def _ms(p: dict) -> str:
    return f"median {p['median']:.0f} ms, p99 {p['p99']:.0f} ms" if p else "n/a"


def cmd_demo(args: argparse.Namespace) -> int:
    tty = sys.stderr.isatty() and not args.json
    what = f"synthetic {args.width}x{args.height} scene at {args.fps:g} frames/s, " + (
        f"target {args.target_kbps:g} kbit/s" if args.target_kbps else f"quality {args.quality}")

    def listening(url, port, cameras):
        if not args.json:
            print(f"edgecodec demo: {what}, {args.duration:g} s, edge -> server over {url}", flush=True)

    def progress(elapsed, total):
        if tty:
            sys.stderr.write(f"\rstreaming {min(elapsed, total):4.1f}/{total:.0f} s ")
            sys.stderr.flush()

    run = run_loopback(args.duration, args.width, args.height, args.fps, args.quality, args.target_kbps,
                       on_listening=listening, progress=progress)
    if tty:
        sys.stderr.write("\n")
    s = summarize(run)
    s["keep_up_note"] = keep_up_note(s, args.fps)
    if args.json:
        json.dump(s, sys.stdout, indent=1)
        print()
    else:
        psnr = f"{s['psnr_db']:.2f} dB" if s["psnr_db"] is not None else "n/a"
        print(f"  edge     captured {s['captured']}, encoded {s['encoded']} ({s['analysis']} {s['encoder']} "
              f"encoder, {s['encode_ms']:.0f} ms), "
              f"dropped at source {s['dropped_at_source']}")
        print(f"  stream   {s['fps']:.1f} frames/s, {s['kbps']:.0f} kbit/s; server stored {s['stored']} "
              f"frames, {s['duplicates']} duplicates, in order: {'yes' if s['frames_in_order'] else 'NO'}")
        print(f"  quality  PSNR {psnr} over {s['decoded']} decoded frames ({s['decoder']} decoder, "
              f"decode {_ms(s['decode_ms'])})")
        print(f"  latency  capture -> received {_ms(s['latency_received_ms'])}; "
              f"capture -> decoded {_ms(s['latency_decoded_ms'])}")
        print(f"  server   CPU {s['server_cpu_s']:.1f} s ({s['server_cpu_percent']:.0f} %), "
              f"of which decoding {s['decode_cpu_s']:.1f} s")
        if s["keep_up_note"]:
            print(f"  note     {s['keep_up_note']}")
    return 0 if s["stored"] > 0 and s["frames_in_order"] else 1
