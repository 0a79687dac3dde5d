"""``edgecodec encode | decode | info | eval``: files in, files out, over ``edgecodec.codec``."""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import pathlib
import sys
import time

from edgecodec import bitstream
from edgecodec.cli.progress import Progress
from edgecodec.errors import EdgecodecError
from edgecodec.imageio import IMAGE_SUFFIXES, read_image


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="model folder (default: the models shipped with edgecodec)")
    p.add_argument("--threads", type=int, default=2, help="TFLite threads (default 2)")


def _decoder_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=("full", "live"), default="full",
                   help="synthesis: full (default) or the model's faster live one, at some PSNR")


def _analysis_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--analysis", choices=("full", "fast"), default="full",
                   help="encoder: full (default) or the model's faster fast one, at some PSNR for the bits")


def _codec(args, encoder: str = "int8"):
    from edgecodec.codec import Codec

    return Codec.load(args.model, threads=args.threads, encoder=encoder, analysis=args.analysis,
                      delegate=getattr(args, "delegate", None))


def expand_inputs(inputs: list[str], suffixes) -> list[pathlib.Path]:
    """Files, directories (their matching files) and glob patterns, in a stable order, without repeats."""
    out: list[pathlib.Path] = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes))
        elif any(ch in item for ch in "*?["):
            out.extend(sorted(pathlib.Path(p) for p in glob.glob(item, recursive=True)))
        else:
            out.append(path)
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    if not unique:
        raise EdgecodecError(f"no input files in {' '.join(inputs)}")
    return unique


def _outputs(inputs: list[pathlib.Path], output: str | None, suffix: str) -> list[pathlib.Path]:
    """One output per input: OUTPUT itself for a single input, else OUTPUT/<stem><suffix>."""
    if output is None:
        return [p.with_suffix(suffix) for p in inputs]
    out = pathlib.Path(output)
    if len(inputs) == 1 and not out.is_dir():
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    return [out / (p.stem + suffix) for p in inputs]


def _run_batch(label, inputs, outputs, work, as_json):
    """Apply work(inp, outp) -> dict to every file; failures are reported and make the exit code 1."""
    results, failed = [], 0
    with Progress(len(inputs), label, enabled=None if not as_json else False) as bar:
        for inp, outp in zip(inputs, outputs):
            try:
                results.append(work(inp, outp))
            except EdgecodecError as exc:
                failed += 1
                results.append({"input": str(inp), "error": str(exc)})
                print(f"edgecodec {label}: {inp}: {exc}", file=sys.stderr)
            bar.update()
    if as_json:
        print(json.dumps({"files": results, "failed": failed}, indent=1))
    return 1 if failed else 0


VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                  ".mjpeg", ".mjpg", ".y4m", ".gif", ".3gp", ".ogv"}
DEFAULT_FPS = 10.0


def _open_video(path):
    """cv2.VideoCapture without FFmpeg's own log lines: a failure is reported once, as our message."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg first opens
    import cv2

    return cv2.VideoCapture(str(path))


def is_video(path: pathlib.Path) -> bool:
    """A clip to encode as a stream: a video suffix, or (not an image suffix) a file OpenCV opens as one."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES or suffix == ".ecr" or not path.is_file():
        return False
    import cv2

    cap = _open_video(path)
    try:
        return cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 1
    finally:
        cap.release()


def encode_clip(codec, source: pathlib.Path, output: pathlib.Path, quality: int, *, intra: bool = False,
                key_interval_s: float = 2.0, fps: float | None = None, camera_id: str | None = None,
                progress=None) -> dict:
    """Encode every frame of a video clip in stream mode into a recording (``.ecr``); return a summary.

    Timestamps start at 0 and follow the clip's frame rate (or ``fps``). The recording is written next to
    ``output`` and renamed over it when complete, so a failed encode leaves no partial file.
    """
    import cv2

    from edgecodec.recording import RecordingWriter
    from edgecodec.recording.writer import DEFAULT_INDEX_EVERY
    from edgecodec.temporal import StreamEncoder

    quality = codec._check_quality(quality)
    encoder = StreamEncoder(codec, key_interval_s=key_interval_s, intra=intra)  # checks the interval
    cap = _open_video(source)
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise EdgecodecError(f"cannot read video {source} (missing, or no decoder for it in OpenCV)")
    rate = fps or cap.get(cv2.CAP_PROP_FPS)
    if not rate or not math.isfinite(rate) or rate <= 0 or rate > 1000:
        rate = DEFAULT_FPS
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            tmp.unlink()
    except OSError as exc:
        raise EdgecodecError(f"cannot write {output}: {exc.strerror}") from None
    camera = camera_id or source.stem or "clip"
    n = size = pixels = 0
    started = time.perf_counter()
    try:
        with RecordingWriter(tmp, camera[:255], DEFAULT_INDEX_EVERY, created_us=0) as writer:
            while ok:
                if frame.ndim == 3 and frame.shape[2] == 3:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                elif frame.ndim == 3 and frame.shape[2] == 4:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
                packet = encoder.encode(frame, quality, n, round(n * 1e6 / rate))
                writer.append(packet)
                n += 1
                size += len(packet)
                pixels += frame.shape[0] * frame.shape[1]
                if progress:
                    progress(n, max(total, n))
                ok, frame = cap.read()
        os.replace(tmp, output)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    finally:
        cap.release()
    seconds = time.perf_counter() - started
    duration = n / rate
    return {"input": str(source), "output": str(output), "frames": n, "key_frames": encoder.keys,
            "delta_frames": encoder.deltas, "bytes": size, "file_bytes": output.stat().st_size,
            "fps": round(rate, 3), "duration_s": round(duration, 3),
            "kbit_s": round(size * 8 / 1000 / duration, 2), "bpp": round(size * 8 / pixels, 4),
            "quality": quality, "mode": "intra" if intra else "stream", "encode_s": round(seconds, 3),
            "encode_fps": round(n / seconds, 2) if seconds > 0 else 0.0}


def cmd_encode_clips(args, codec, inputs) -> int:
    outputs = _outputs(inputs, args.output, ".ecr")
    results, failed = [], 0
    for inp, outp in zip(inputs, outputs):
        with Progress(0, f"encode {inp.name}", enabled=None if not (args.json or args.quiet) else False) as bar:
            try:
                row = encode_clip(codec, inp, outp, args.quality, intra=args.intra,
                                  key_interval_s=args.key_interval, fps=args.fps,
                                  progress=lambda done, total: bar.set(done, total))
            except EdgecodecError as exc:
                if len(inputs) == 1:
                    raise
                failed += 1
                results.append({"input": str(inp), "error": str(exc)})
                print(f"edgecodec encode: {inp}: {exc}", file=sys.stderr)
                continue
        results.append(row)
        if not args.json:
            print(f"{inp} -> {outp}: {row['frames']} frames ({row['key_frames']} key frames) at "
                  f"{row['fps']:g} frames/s, {row['bytes']} bytes, {row['kbit_s']:.1f} kbit/s, "
                  f"{row['bpp']:.3f} bpp, {row['encode_fps']:.1f} frames/s encoded")
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"files": results, "failed": failed}, indent=1))
    return 1 if failed else 0


def cmd_encode(args) -> int:
    if args.key_interval is not None and not args.key_interval > 0:
        print("edgecodec encode: error: --key-interval must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.fps is not None and not args.fps > 0:
        print("edgecodec encode: error: --fps must be positive", file=sys.stderr)
        return 2
    inputs = expand_inputs(args.inputs, IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    clips = [p for p in inputs if is_video(p)]
    if clips and len(clips) != len(inputs):
        print("edgecodec encode: error: give either images or video clips, not both", file=sys.stderr)
        return 2
    codec = _codec(args)
    if clips:
        args.key_interval = args.key_interval or 2.0
        return cmd_encode_clips(args, codec, clips)
    outputs = _outputs(inputs, args.output, ".ecc")

    def work(inp, outp):
        img = read_image(inp)
        t0 = time.perf_counter()
        packet = codec.encode(img, args.quality)
        ms = 1000 * (time.perf_counter() - t0)
        outp.write_bytes(packet)
        bpp = len(packet) * 8 / (img.shape[0] * img.shape[1])
        if not args.json and not args.quiet:
            print(f"{inp} -> {outp}: {len(packet)} bytes, {bpp:.3f} bpp, {ms:.0f} ms")
        return {"input": str(inp), "output": str(outp), "bytes": len(packet), "bpp": bpp, "encode_ms": ms}

    return _run_batch("encode", inputs, outputs, work, args.json)


def cmd_decode(args) -> int:
    from edgecodec.batch import DecodeTask, decode_batch

    inputs = expand_inputs(args.inputs, {".ecc"})
    outputs = _outputs(inputs, args.output, ".png")
    tasks = [DecodeTask(str(i), output=str(o)) for i, o in zip(inputs, outputs)]
    results, failed = [], 0
    with Progress(len(tasks), "decode", enabled=None if not args.json else False) as bar:
        for r in decode_batch(tasks, model_dir=args.model, jobs=args.jobs,
                              threads=args.threads if args.jobs <= 1 else None, decoder=args.decoder,
                              progress=lambda done, total: bar.set(done, total)):
            if not r.ok:
                failed += 1
                print(f"edgecodec decode: {r.task.source}: {r.error}", file=sys.stderr)
                results.append({"input": r.task.source, "error": r.error})
                continue
            if not args.json and not args.quiet:
                print(f"{r.task.source} -> {r.task.output}: {r.width}x{r.height}, {r.decode_ms:.0f} ms")
            results.append({"input": r.task.source, "output": r.task.output, "width": r.width,
                            "height": r.height, "decode_ms": r.decode_ms})
    if args.json:
        print(json.dumps({"files": results, "failed": failed}, indent=1))
    return 1 if failed else 0


def cmd_info(args) -> int:
    rows, failed = [], 0
    for path in expand_inputs(args.inputs, {".ecc"}):
        try:
            data = path.read_bytes()
            header, streams = bitstream.unpack(data)
        except OSError as exc:
            failed += 1
            print(f"edgecodec info: cannot read {path}: {exc.strerror}", file=sys.stderr)
            continue
        except EdgecodecError as exc:
            failed += 1
            print(f"edgecodec info: {path}: {exc}", file=sys.stderr)
            continue
        row = {
            "file": str(path), "bytes": len(data), "kind": header.kind.name.lower(),
            "model_id": header.model_id.hex(), "width": header.width, "height": header.height,
            "channels": header.channels, "quality": header.quality, "sequence": header.sequence,
            "timestamp_us": header.timestamp_us, "streams": [len(s) for s in streams],
            "bpp": len(data) * 8 / (header.width * header.height),
        }
        rows.append(row)
        if not args.json:
            print(f"{path}: {row['kind']} {row['width']}x{row['height']} ch={row['channels']} "
                  f"q={row['quality']} model={row['model_id']} {row['bytes']} bytes ({row['bpp']:.3f} bpp) "
                  f"streams={row['streams']}")
    if args.json:
        print(json.dumps(rows if len(rows) != 1 else rows[0], indent=1))
    return 1 if failed else 0


def cmd_eval(args) -> int:
    from edgecodec.evaluate import evaluate_folder

    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else None
    with Progress(0, "eval", enabled=None if not args.json else False) as bar:
        report = evaluate_folder(args.folder, model_dir=args.model, qualities=qualities,
                                 encoder=args.encoder, threads=args.threads, decoder=args.decoder,
                                 analysis=args.analysis,
                                 progress=lambda done, total: bar.set(done, total))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['images']} images in {report['folder']}, {report['analysis']} {report['encoder']} encoder, "
              f"{report['decoder']} decoder, "
              f"model {report['model_id']}")
        print(f"{'quality':>7} {'bpp':>7} {'PSNR dB':>8} {'enc ms':>7} {'dec ms':>7}")
        for r in report["per_quality"]:
            print(f"{r['quality']:>7} {r['bpp']:>7.3f} {r['psnr']:>8.2f} {r['encode_ms']:>7.1f} {r['decode_ms']:>7.1f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("encode", help="compress images into .ecc files, video clips into .ecr recordings",
                       description="Compress images (PNG, JPEG, ...; gray, RGB or RGBA) into .ecc files, or "
                                   "every frame of a video clip OpenCV reads (.mp4, .avi, ...) into a recording "
                                   "(.ecr) in stream mode: key frames every --key-interval seconds of the clip, "
                                   "delta frames between them. `edgecodec export` turns a recording back into "
                                   "PNG frames or a video.")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns; or video clips")
    p.add_argument("-o", "--output", help="output file (one input) or folder (several)")
    p.add_argument("-q", "--quality", type=int, default=4, help="quality index, 0 = fewest bits (default 4)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--quiet", action="store_true", help="no per-file lines")
    p.add_argument("--intra", action="store_true", help="video: every frame a key frame (a still), no delta frames")
    p.add_argument("--key-interval", type=float, metavar="SECONDS",
                   help="video: seconds of the clip between key frames (default 2)")
    p.add_argument("--fps", type=float, help="video: frame rate for the timestamps (default: the clip's)")
    _model_args(p)
    _analysis_arg(p)
    p.add_argument("--delegate", metavar="LIB", help="run the int8 encoder on this TFLite delegate library "
                   "(e.g. libedgetpu.so.1); the CPU, with a warning, when it cannot be loaded")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="reconstruct images from .ecc files",
                       description="Reconstruct images from .ecc files (files, folders or globs).")
    p.add_argument("inputs", nargs="+", help=".ecc files, folders or glob patterns")
    p.add_argument("-o", "--output", help="output image (one input) or folder (several)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--quiet", action="store_true", help="no per-file lines")
    _model_args(p)
    _decoder_arg(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="show the header of .ecc files",
                       description="Validate .ecc files and print their headers (no model needed).")
    p.add_argument("inputs", nargs="+", help=".ecc files, folders or glob patterns")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="rate-distortion of the codec on a folder of images",
                       description="Mean bpp (from the real bytes) and PSNR over RGB per quality.")
    p.add_argument("folder", help="folder of images, e.g. Kodak")
    p.add_argument("--qualities", help="comma-separated quality indices (default: all)")
    p.add_argument("--encoder", choices=("int8", "float"), default="int8",
                   help="int8 edge encoder (default) or its float twin")
    p.add_argument("--json", action="store_true", help="print JSON")
    _model_args(p)
    _analysis_arg(p)
    _decoder_arg(p)
    p.set_defaults(func=cmd_eval)
