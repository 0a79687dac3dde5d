#!/usr/bin/env python3
"""Frames per minute over the firmware bridge at slow serial speeds, protocol overhead included.

    python -m tools.bench_serial                        # a 3000-byte frame (quality 1, 640x480)
    python -m tools.bench_serial --frame shot.ecc       # a real coded frame
    python -m tools.bench_serial --size 8000 --bauds 115200 --corrupt 0.001 --json

A host ``Link`` sends the frame back to back to a simulated device for ``--seconds`` per baud rate
(at least ``--min-frames`` frames). The wire between them delivers bytes at the baud rate's pace
(10 bits a byte, 8N1) through a 4 KiB transmit buffer, in both directions, so chunk headers,
CRCs, COBS, status replies, timeouts and retransmissions all cost what they cost on a UART.
``--pty`` runs the same through two real pseudo-terminals and a pacing relay instead.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import random
import sys
import time


from firmware_bridge import Link  # noqa: E402
from firmware_bridge.channel import FaultModel, PacedPair, PtyRelay  # noqa: E402
from firmware_bridge.simulator import DeviceSimulator  # noqa: E402

QUALITY1_640x480 = 3000  # bytes: a typical quality-1 640x480 frame until real .ecc files are used


def bench_one(data: bytes, baud: int, seconds: float, min_frames: int, corrupt: float, use_pty: bool,
              seed: int = 1) -> dict:
    faults = [FaultModel(corrupt, corrupt / 4, corrupt / 4, seed=seed + i) if corrupt else None for i in (0, 1)]
    device = DeviceSimulator("bench-device")
    if use_pty:
        channel = PtyRelay(faults[0], faults[1], baudrate=baud)
        device.attach(channel.port_b, baud, heartbeat_interval=0)
        host = Link(channel.port_a, baud, heartbeat_interval=0)
    else:
        channel = PacedPair(baud, faults[0], faults[1])
        device.attach(channel.b, baud, heartbeat_interval=0)
        host = Link(channel.a, baud, heartbeat_interval=0)
    try:
        host.wait_peer(10)
        time.sleep(0.2)  # let the HELLO exchange drain off the wire
        before, rx_before = host.stats, device.link.stats
        sent = failed = 0
        t0 = time.perf_counter()
        while sent < min_frames or time.perf_counter() - t0 < seconds:
            if host.send_frame(data, timeout=max(60.0, 40 * len(data) * 10 / baud)):
                sent += 1
            else:
                failed += 1
                if failed > 3:
                    break
        elapsed = time.perf_counter() - t0
        time.sleep(0.1)
        after, rx_after = host.stats, device.link.stats
    finally:
        host.close()
        device.close()
        channel.close()
    ok = device.frames and all(f == data for f in device.frames)
    wire = after["bytes_tx"] - before["bytes_tx"]
    back = rx_after["bytes_tx"] - rx_before["bytes_tx"]
    ideal = baud / 10 / len(data) * 60
    return {
        "baud": baud, "frames": sent, "failed": failed, "seconds": round(elapsed, 2),
        "frames_per_minute": round(sent / elapsed * 60, 2) if elapsed else None,
        "ideal_frames_per_minute": round(ideal, 2),
        "efficiency": round(sent / elapsed * 60 / ideal, 3) if elapsed else None,
        "wire_bytes_per_frame": round(wire / max(sent, 1)),
        "overhead": round(wire / max(sent, 1) / len(data) - 1, 4),
        "return_bytes_per_frame": round(back / max(sent, 1)),
        "chunks_resent": after["chunks_resent"] - before["chunks_resent"],
        "timeouts": after["timeouts"] - before["timeouts"],
        "chunk_size": host.sizer.choose(256),
        "bit_exact": bool(ok) and device.frame_count == sent,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--frame", type=pathlib.Path, metavar="FILE.ecc", help="send this coded frame")
    src.add_argument("--size", type=int, metavar="BYTES",
                     help=f"send random bytes of this size (default {QUALITY1_640x480})")
    parser.add_argument("--bauds", default="115200,9600", help="comma-separated baud rates (default 115200,9600)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time per baud rate (default 15)")
    parser.add_argument("--min-frames", type=int, default=3, help="frames per baud rate at least (default 3)")
    parser.add_argument("--corrupt", type=float, default=0.0, metavar="P",
                        help="byte corruption probability each way (inserts and drops at P/4 each)")
    parser.add_argument("--pty", action="store_true", help="through real pseudo-terminals and a pacing relay")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.frame is not None:
        try:
            data = args.frame.read_bytes()
        except OSError as exc:
            print(f"bench_serial: cannot read {args.frame}: {exc.strerror}", file=sys.stderr)
            return 1
        source = str(args.frame)
    else:
        data = random.Random(0).randbytes(args.size or QUALITY1_640x480)
        source = f"random {len(data)} bytes"
    if not data:
        print("bench_serial: empty frame", file=sys.stderr)
        return 1
    try:
        bauds = [int(b) for b in args.bauds.split(",") if b]
    except ValueError:
        parser.error("--bauds takes comma-separated integers")
        return 2

    results = [bench_one(data, b, args.seconds, args.min_frames, args.corrupt, args.pty) for b in bauds]
    report = {"frame": source, "frame_bytes": len(data), "corrupt": args.corrupt,
              "channel": "pty relay" if args.pty else "in-process paced pair", "python": platform.python_version(),
              "cpus": os.cpu_count(), "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{source}, {report['channel']}, byte corruption {args.corrupt:g}")
        print(f"{'baud':>7} {'frames/min':>10} {'ideal':>8} {'eff.':>6} {'wire B/frame':>12} {'overhead':>9} "
              f"{'resent':>6} {'bit-exact':>9}")
        for r in results:
            print(f"{r['baud']:>7} {r['frames_per_minute']:>10.1f} {r['ideal_frames_per_minute']:>8.1f} "
                  f"{r['efficiency']:>6.2f} {r['wire_bytes_per_frame']:>12} {100 * r['overhead']:>8.1f}% "
                  f"{r['chunks_resent']:>6} {str(r['bit_exact']):>9}")
    return 0 if all(r["bit_exact"] and r["frames"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
