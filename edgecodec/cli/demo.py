"""``edgecodec demo``: stream the synthetic scene from an edge process to a server process on loopback.

Both sides are the real commands (``edgecodec serve`` and ``edgecodec edge``) in their own
processes, with a throw-away secret and spool. The server decodes what it receives to measure
PSNR and capture-to-decoded latency (``edgecodec.loopback``, shared with tools/bench_stream.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from edgecodec.loopback import run_loopback, summarize


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
