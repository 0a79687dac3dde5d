#!/usr/bin/env python3
"""End-to-end streaming benchmark: a real edge process sends the synthetic scene to a real server process.

Reports what the camera sees: frames/s and kbit/s delivered, frames dropped at the source, PSNR,
latency from capture to received and to decoded on the server, and the server's CPU per camera; and,
before and after, how long an OpenCV JPEG encode of a frame takes, as the machine's speed at the time.
With ``--cameras N`` the server also takes N-1 replayed cameras (pre-encoded frames re-stamped and
sent at the same rate from this process), so the ingest cost per camera is measured at scale.

    python -m tools.bench_stream                  # 640x480 at 30 frames/s for 20 s
    python -m tools.bench_stream --cameras 8 --json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import threading
import time

from edgecodec import bitstream
from edgecodec.loopback import run_loopback, summarize

TARGET_MEDIAN_MS = 100
TARGET_P99_MS = 250


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reference_ms(width: int, height: int, runs: int = 40) -> float:
    """Median ms of one OpenCV JPEG encode (quality 90, one thread) of a synthetic frame: the machine's
    speed at the time, so that runs from different hours can be compared."""
    import cv2
    import numpy as np

    from edgecodec.testscene import TestScene

    frame = TestScene(width, height).render(0)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
            times.append(time.perf_counter() - t0)
    finally:
        cv2.setNumThreads(threads)
    return round(1000 * float(np.median(times)), 3)


class Replay(threading.Thread):
    """A stand-in camera: one real packet, re-numbered and re-stamped, sent at ``fps``."""

    def __init__(self, url: str, camera_id: str, secret: str, packet: bytes, fps: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.camera_id, self.secret = url, camera_id, secret
        self.header, self.streams = bitstream.unpack(packet)
        self.fps, self.stop = fps, stop
        self.sent = 0
        self.error = None

    def run(self) -> None:
        from edgecodec.transport import LinkConfig, open_link

        link = open_link(LinkConfig(self.url, self.camera_id, self.secret.encode(), self.header.model_id,
                                    os.urandom(8)))
        try:
            link.connect()
            next_due = time.monotonic()
            seq = 0
            while not self.stop.is_set():
                header = dataclasses.replace(self.header, sequence=seq, timestamp_us=time.time_ns() // 1000)
                link.send_frame(seq, bitstream.pack(header, self.streams))
                link.poll(0)
                seq += 1
                self.sent += 1
                next_due += 1 / self.fps
                self.stop.wait(max(0.0, next_due - time.monotonic()))
        except Exception as exc:  # reported in the results, unless it is the server's normal shutdown
            if "shutting down" not in str(exc):
                self.error = str(exc)
        finally:
            link.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured (default 20)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds left out at the start (default 2)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--target-kbps", type=float, default=0.0)
    p.add_argument("--edge-threads", type=int, default=1,
                   help="encoder threads (default 1: with the server's one decoder thread, each process has "
                   "one of two cores, as if on two machines; 2 oversubscribes them)")
    p.add_argument("--edge-encoder", choices=("auto", "int8", "float"), default="auto",
                   help="as `edgecodec edge --encoder` (default auto: the faster of the two on this machine)")
    p.add_argument("--edge-analysis", choices=("auto", "full", "fast"), default="auto",
                   help="as `edgecodec edge --analysis` (default auto: the fast one where the full one needs more "
                   "than half the frame period)")
    p.add_argument("--decode-threads", type=int, default=1, help="server decoder threads (default 1)")
    p.add_argument("--decoder", choices=("auto", "full", "live"), default="auto",
                   help="server's synthesis, as `edgecodec serve --decoder` (default auto: live if the model has one)")
    p.add_argument("--cameras", type=int, default=1, help="cameras on the server, all but one replayed")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)

    stop = threading.Event()
    replays: list[Replay] = []

    def start_replays(url, port, secrets):
        if args.cameras <= 1:
            return
        from edgecodec.bitstream import Kind
        from edgecodec.codec import Codec
        from edgecodec.testscene import TestScene

        codec = Codec.load(threads=1)
        packet = codec.encode(TestScene(args.width, args.height).render(0), args.quality, kind=Kind.FRAME)
        for i in range(1, args.cameras):
            cid = f"replay-{i}"
            replays.append(Replay(url, cid, secrets[cid], packet, args.fps, stop))
            replays[-1].start()

    reference_before = reference_ms(args.width, args.height)
    started = time.time()
    try:
        run = run_loopback(args.duration, args.width, args.height, args.fps, args.quality, args.target_kbps,
                           warmup=args.warmup, edge_threads=args.edge_threads,
                           decode_threads=args.decode_threads, extra_cameras=args.cameras - 1, decoder=args.decoder,
                           extra_edge_args=("--encoder", args.edge_encoder, "--analysis", args.edge_analysis),
                           on_listening=start_replays)
    finally:
        stop.set()
        for r in replays:
            r.join(5)
    reference_after = reference_ms(args.width, args.height)
    s = summarize(run)
    uptime = max(run["server"]["uptime_s"], 1e-9)
    ingest_cpu = max(s["server_cpu_s"] - s["decode_cpu_s"], 0.0)
    lat = s["latency_decoded_ms"]
    results = {
        "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
        "time_utc": time.strftime("%H:%M:%S", time.gmtime(started)),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "reference_jpeg_ms": {"before": reference_before, "after": reference_after},
        "config": {"width": args.width, "height": args.height, "fps": args.fps, "quality": args.quality,
                   "target_kbps": args.target_kbps, "duration_s": args.duration, "cameras": args.cameras,
                   "edge_threads": args.edge_threads, "edge_encoder": args.edge_encoder,
                   "edge_analysis": args.edge_analysis,
                   "decode_threads": args.decode_threads,
                   "decoder": args.decoder},
        "captured": s["captured"],
        "encoded": s["encoded"],
        "dropped_at_source": s["dropped_at_source"],
        "dropped_percent": round(100 * s["dropped_at_source"] / max(s["captured"], 1), 1),
        "stored": s["stored"],
        "duplicates": s["duplicates"],
        "frames_in_order": s["frames_in_order"],
        "delivered_fps": s["fps"],
        "kbps": s["kbps"],
        "encoder": s["encoder"],
        "analysis": s["analysis"],
        "encode_ms": s["encode_ms"],
        "decode_ms": s["decode_ms"],
        "psnr_db": s["psnr_db"],
        "decoder": s["decoder"],
        "decoded": s["decoded"],
        "latency_received_ms": s["latency_received_ms"],
        "latency_decoded_ms": lat,
        "server_cpu_percent": round(100 * s["server_cpu_s"] / uptime, 1),
        "server_decode_cpu_percent": round(100 * s["decode_cpu_s"] / uptime, 1),
        "server_ingest_cpu_percent_per_camera": round(100 * ingest_cpu / uptime / args.cameras, 2),
        "replayed_frames": sum(r.sent for r in replays),
        "replay_errors": [r.error for r in replays if r.error],
        "meets_latency_target": bool(lat) and lat["median"] <= TARGET_MEDIAN_MS and lat["p99"] <= TARGET_P99_MS,
    }
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"{args.width}x{args.height} at {args.fps:g} frames/s, {args.duration:g} s, "
              f"{args.cameras} camera(s), {results['machine']}")
        print(f"  edge     captured {s['captured']}, encoded {s['encoded']} ({s['analysis']} {s['encoder']} encoder, "
              f"{s['encode_ms']:.0f} ms each), "
              f"dropped at source {s['dropped_at_source']} ({results['dropped_percent']} %)")
        print(f"  stream   {s['fps']:.1f} frames/s, {s['kbps']:.0f} kbit/s, PSNR {s['psnr_db']} dB "
              f"({s['decoder']} decoder)")
        for name, key in (("received", "latency_received_ms"), ("decoded", "latency_decoded_ms")):
            v = results[key]
            print(f"  capture -> {name:8s} median {v.get('median')} ms, p95 {v.get('p95')}, p99 {v.get('p99')}, "
                  f"max {v.get('max')}")
        print(f"  server   CPU {results['server_cpu_percent']} % of a core (decoding "
              f"{results['server_decode_cpu_percent']} %), ingest {results['server_ingest_cpu_percent_per_camera']} "
              f"% per camera")
        print(f"  machine  OpenCV JPEG encode of a frame (one thread, the speed reference) {reference_before} ms "
              f"before, {reference_after} ms after")
        print(f"  target   median <= {TARGET_MEDIAN_MS} ms and p99 <= {TARGET_P99_MS} ms: "
              f"{'met' if results['meets_latency_target'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
