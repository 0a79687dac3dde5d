"""``edgecodec export``: recordings to PNG frames or a video file, over ``edgecodec.export``."""
from __future__ import annotations

import json
import sys

from edgecodec.cli.progress import Progress

EPILOG = """\
time ranges: --from/--to take seconds after the first frame (--from 30 --to 90) or an ISO date-time
(--from 2026-11-24T17:30:00, local time unless it ends in Z or an offset); both ends are included.

exit codes: 0 every selected frame exported (a recording that a server is still writing is exported up
to its last whole frame); 1 an error, or damaged/undecodable frames (the intact ones are still exported
and the rest listed); 2 usage."""


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "export", help="decode recordings to PNG frames or a video file",
        description="Decode the frames of .ecr recordings (files, folders or globs) into PNG files in a "
                    "folder, or into one video file: .mp4, .mkv or .mov in H.264 at the frames' capture "
                    "times (PyAV, else the ffmpeg program; OpenCV's mp4v at a constant rate only as a last "
                    "resort), .avi in MJPG.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recordings", nargs="+", metavar="RECORDING", help=".ecr files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="DIR|VIDEO",
                   help="folder for PNG frames, or a video file name ending in .mp4/.mkv/.mov/.avi")
    p.add_argument("--from", dest="start", metavar="TIME", help="first capture time to export")
    p.add_argument("--to", dest="end", metavar="TIME", help="last capture time to export")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="decoding processes (default 1)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="TFLite threads per process (default: cores / jobs)")
    p.add_argument("--fps", type=float, help="a constant video frame rate, frames evenly spaced (default: "
                                             "each frame at its capture time, so gaps in the recording stay gaps)")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the models shipped with edgecodec)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from edgecodec.export import export

    if args.jobs < 1:
        print("edgecodec export: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    if args.fps is not None and not 0 < args.fps <= 1000:
        print("edgecodec export: error: --fps must be between 0 and 1000", file=sys.stderr)
        return 2
    show_bar = None if not (args.json or args.quiet) else False
    with Progress(0, "export", enabled=show_bar) as bar:
        report = export(args.recordings, args.output, start=args.start, end=args.end, jobs=args.jobs,
                        threads=args.threads, model_dir=args.model, fps=args.fps,
                        progress=lambda done, total: bar.set(done, total))
    for path, damage in report.damage:
        print(f"edgecodec export: {path}: {damage.describe()} skipped", file=sys.stderr)
    for path, pending in report.growing:
        print(f"edgecodec export: {path}: still being written; exported up to its last whole frame "
              f"({pending} bytes of the next one not yet written)", file=sys.stderr)
    for path, error in report.unreadable:
        print(f"edgecodec export: {path}: {error}", file=sys.stderr)
    for where, error in report.failures[:20]:
        print(f"edgecodec export: {where}: {error}", file=sys.stderr)
    if len(report.failures) > 20:
        print(f"edgecodec export: ... and {len(report.failures) - 20} more failed frames", file=sys.stderr)
    s = report.summary
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        video = ""
        if report.fps:
            timing = f"{report.fps:.2f} frames/s" if report.constant_rate else \
                f"capture times, {report.video_seconds or 0:.1f} s"
            video = f" ({report.video_codec}, {timing})"
        print(f"{s.frames} of {report.selected} frames -> {report.output}{video}: {s.bytes} bytes, "
              f"{s.mean_bpp:.3f} bpp, {s.seconds:.1f} s ({s.fps:.1f} frames/s)"
              + (f"; {s.failed} failed" if s.failed else "")
              + (f"; {len(report.damage)} damaged regions skipped" if report.damage else ""))
    return 0 if report.clean else 1
