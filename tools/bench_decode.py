"""Batch decode throughput of 640x480 recordings with 1 and 2 worker processes, measured on this machine.

    python -m tools.bench_decode [--frames 48] [--quality 4] [--jobs 1,2] [--decoder full,live] [--json]

Builds a recording of the synthetic scene (real codec packets, as a camera sends them), then decodes it
the way ``edgecodec export`` does: ``png`` writes one PNG per frame in the workers, ``decode`` hands the
pixels back to the parent (as a video export does). For each job count, two thread settings: the CLI
default (cores / jobs TFLite threads per worker) and one thread per worker. ``frames_per_s`` is over
the whole run, worker start-up included; ``steady_frames_per_s`` leaves out the wait for the first
result (start-up and model load). The machine's load average is reported: other work skews the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

from edgecodec.batch import DecodeTask, decode_batch, default_threads  # noqa: E402
from edgecodec.bitstream import Kind  # noqa: E402
from edgecodec.codec import Codec  # noqa: E402
from edgecodec.recording import RecordingReader, RecordingWriter  # noqa: E402
from edgecodec.testscene import TestScene  # noqa: E402

W, H = 640, 480


def make_recording(path: pathlib.Path, frames: int, quality: int) -> int:
    codec = Codec.load(threads=2)
    scene = TestScene(W, H)
    t0 = 1_700_000_000_000_000
    total = 0
    with RecordingWriter(path, "bench") as writer:
        for i in range(frames):
            ts = t0 + i * 100_000
            packet = codec.encode(scene.render(ts), quality, kind=Kind.FRAME, sequence=i, timestamp_us=ts)
            writer.append(packet)
            total += len(packet)
    return total


def run(path: pathlib.Path, jobs: int, threads: int, mode: str, out_dir: pathlib.Path, decoder: str) -> dict:
    with RecordingReader(path) as reader:
        frames = reader.scan().frames
    tasks = [DecodeTask(str(path), f.offset, str(out_dir / f"{i:06d}.png") if mode == "png" else None)
             for i, f in enumerate(frames)]
    started = time.perf_counter()
    first = None
    ok = 0
    for result in decode_batch(tasks, jobs=jobs, threads=threads, decoder=decoder):
        if first is None:
            first = time.perf_counter()
        ok += result.ok
    elapsed = time.perf_counter() - started
    steady = time.perf_counter() - first
    return {"mode": mode, "decoder": decoder, "jobs": jobs, "threads_per_worker": threads, "frames": ok,
            "seconds": round(elapsed, 3), "frames_per_s": round(ok / elapsed, 2),
            "steady_frames_per_s": round((ok - 1) / steady, 2) if steady > 0 else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48, help="frames in the recording (default 48)")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--jobs", default="1,2", help="comma-separated job counts (default 1,2)")
    ap.add_argument("--modes", default="png,decode", help="png and/or decode (default both)")
    ap.add_argument("--decoder", default="full", help="full and/or live (comma-separated; default full)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    job_counts = [int(j) for j in args.jobs.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        tmp = pathlib.Path(tmp)
        recording = tmp / "bench.ecr"
        coded = make_recording(recording, args.frames, args.quality)
        runs = []
        for mode in args.modes.split(","):
            for decoder in args.decoder.split(","):
                for jobs in job_counts:
                    for threads in sorted({default_threads(jobs), 1}, reverse=True):
                        out = tmp / f"{mode}-{decoder}-{jobs}-{threads}"
                        out.mkdir()
                        runs.append(run(recording, jobs, threads, mode, out, decoder))
                        if not args.json:
                            r = runs[-1]
                            print(f"{mode:6} {decoder} -j {jobs} x {threads} threads: "
                                  f"{r['frames_per_s']:6.2f} frames/s "
                                  f"({r['steady_frames_per_s']} steady), {r['seconds']} s", flush=True)
    report = {
        "size": f"{W}x{H}", "frames": args.frames, "quality": args.quality,
        "mean_bpp": round(coded * 8 / (args.frames * W * H), 4),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()], "runs": runs,
    }
    for mode in args.modes.split(","):
        for decoder in args.decoder.split(","):
            default = {r["jobs"]: r for r in runs if r["mode"] == mode and r["decoder"] == decoder
                       and r["threads_per_worker"] == default_threads(r["jobs"])}
            if 1 in default and 2 in default:
                key = f"{mode}_scaling_j2_over_j1" + ("" if decoder == "full" else f"_{decoder}")
                report[key] = round(default[2]["frames_per_s"] / default[1]["frames_per_s"], 2)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"mean {report['mean_bpp']} bpp; load average {report['load_average']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
