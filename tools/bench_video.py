"""Rate-distortion of a video clip: edgecodec's stream mode against its intra mode, MJPEG and x264.

    python -m tools.bench_video CLIP [--frames 200] [--qualities 0,...,8] [--json out.json] [--plot out.png]

On the same first N frames of CLIP (anything OpenCV's VideoCapture reads), every point is measured in this
run from real bytes and decoded pixels:

* edgecodec stream mode (``edgecodec.temporal.StreamEncoder``: key frames every ``--key-interval`` s of the
  clip's time, delta frames in between) and intra mode (every frame a key frame), per quality; the
  packets' bytes with their headers, decoded in order by ``StreamDecoder``;
* MJPEG: OpenCV's JPEG (4:2:0, its default) on each frame, per JPEG quality;
* x264 through Debian's ``ffmpeg`` binary, ``-preset ultrafast -tune zerolatency`` and ``-preset medium``,
  per CRF, yuv420p, with a key frame every ``--x264-keyint`` frames (default: the same key interval as
  edgecodec's stream mode, so both streams let a viewer join as fast); the bytes of the raw H.264 stream
  it writes (SPS/PPS and x264's settings SEI included, no container), decoded back by ffmpeg to rgb24.

Rate is kbit/s at the clip's frame rate (all bytes x 8 / the frames' duration); PSNR is over RGB, 8-bit,
per frame, averaged over the frames. BD-rates follow Bjontegaard with ``tools/rd_plot.py``'s helper (cubic
fits of log rate against PSNR over the PSNR range both curves cover; negative: fewer bits at equal PSNR).
Encode time of edgecodec is the median per frame kind (key, delta) of ``StreamEncoder.encode`` calls, on
whatever else the machine runs at the time.

Exit codes: 0 done (x264 rows are skipped with a warning when ffmpeg or its libx264 is missing), 1 the clip
cannot be read or a codec failed, 2 usage errors.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

import cv2
import numpy as np

from edgecodec.errors import EdgecodecError  # noqa: E402
from edgecodec.evaluate import psnr  # noqa: E402
from tools.rd_plot import bd_rate, psnr_overlap  # noqa: E402  (the repo's Bjontegaard helper)

JPEG_QUALITIES = [5, 10, 20, 30, 50, 70, 90]
CRFS = [26, 30, 34, 38, 42, 46, 50]
X264_PRESETS = {"x264 ultrafast zerolatency": ["-preset", "ultrafast", "-tune", "zerolatency"],
                "x264 medium": ["-preset", "medium"]}
STREAM, INTRA, MJPEG = "edgecodec stream", "edgecodec intra", "MJPEG"
X264_FAST, X264_MEDIUM = list(X264_PRESETS)
# (test, reference): BD-rate of test against reference
BD_PAIRS = [(STREAM, INTRA), (STREAM, X264_FAST), (STREAM, X264_MEDIUM), (STREAM, MJPEG),
            (INTRA, MJPEG), (X264_FAST, MJPEG), (X264_MEDIUM, MJPEG)]
MIN_BD_POINTS = 4  # a cubic fit needs four points


class BenchError(Exception):
    """A failure reported as one line and exit code 1."""


# --- input ---------------------------------------------------------------------------------------------

def read_clip(path, frames: int, fps: Optional[float] = None) -> tuple[list[np.ndarray], float]:
    """The first ``frames`` frames of a clip as RGB uint8 arrays, and its frame rate (``fps`` overrides
    the clip's)."""
    path = str(path)
    if not os.path.isfile(path):
        raise BenchError(f"cannot read {path}: no such file")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise BenchError(f"cannot read {path}: OpenCV cannot open it as a video")
        fps = fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        out = []
        while len(out) < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            out.append(cv2.cvtColor(bgr[:, :, :3], cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not out:
        raise BenchError(f"cannot read {path}: no frames decoded")
    if not (fps > 0 and np.isfinite(fps)):
        raise BenchError(f"cannot read {path}: the clip has no frame rate (give one with --fps)")
    return out, fps


def kbps(total_bytes: int, frames: int, fps: float) -> float:
    return total_bytes * 8 / (frames / fps) / 1000


def _point(name_key, value, sizes, dbs, fps) -> dict:
    n = len(sizes)
    return {name_key: value, "frames": n, "bytes": int(sum(sizes)), "kbps": kbps(sum(sizes), n, fps),
            "psnr": float(np.mean(dbs)), "psnr_min": float(np.min(dbs))}


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass


# --- edgecodec --------------------------------------------------------------------------------------

def edgecodec_point(codec, frames, fps: float, quality: int, intra: bool, key_interval_s: float = 2.0,
                    skip_threshold: Optional[float] = None, bar=None) -> dict:
    """One quality of edgecodec's stream mode (``intra=False``) or intra mode on the frames, encoded and
    decoded in order: bytes of the packets, PSNR of the decoded frames, encode ms per frame kind."""
    from edgecodec.temporal import SKIP_THRESHOLD, StreamDecoder, StreamEncoder

    bar = bar or _NoBar()
    enc = StreamEncoder(codec, key_interval_s=key_interval_s,
                        skip_threshold=SKIP_THRESHOLD if skip_threshold is None else skip_threshold, intra=intra)
    dec = StreamDecoder(codec)
    codec.encode(frames[0], quality)  # untimed warm-up: the first call of a quality sets up its interpreter
    sizes, dbs, key_ms, delta_ms, shares, key_bytes = [], [], [], [], [], 0
    for i, rgb in enumerate(frames):
        keys = enc.keys
        t0 = time.perf_counter()
        packet = enc.encode(rgb, quality, sequence=i + 1, timestamp_us=int(round(i * 1e6 / fps)))
        ms = (time.perf_counter() - t0) * 1000
        if enc.keys > keys:
            key_ms.append(ms)
            key_bytes += len(packet)
        else:
            delta_ms.append(ms)
            shares.append(enc.last_coded_share)
        out = dec.decode(packet)
        sizes.append(len(packet))
        dbs.append(psnr(rgb, out))
        bar.update(1)
    p = _point("quality", int(quality), sizes, dbs, fps)
    p.update({"key_frames": len(key_ms), "delta_frames": len(delta_ms), "key_bytes": key_bytes,
              "delta_coded_share": float(np.mean(shares)) if shares else None,
              "encode_ms_key_median": float(np.median(key_ms)) if key_ms else None,
              "encode_ms_delta_median": float(np.median(delta_ms)) if delta_ms else None})
    return p


# --- MJPEG ------------------------------------------------------------------------------------------

def mjpeg_point(frames, fps: float, quality: int, bar=None) -> dict:
    """OpenCV's JPEG (4:2:0) on every frame at one JPEG quality."""
    bar = bar or _NoBar()
    sizes, dbs = [], []
    for rgb in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise BenchError("OpenCV cannot encode JPEG")
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        sizes.append(buf.size)
        dbs.append(psnr(rgb, out))
        bar.update(1)
    return _point("quality", int(quality), sizes, dbs, fps)


# --- x264 -------------------------------------------------------------------------------------------

def find_ffmpeg() -> tuple[Optional[str], str]:
    """(path of an ffmpeg with libx264, '') or (None, why not)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None, "no ffmpeg on PATH (Debian: apt-get install ffmpeg)"
    try:
        encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                                  timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{exe} does not run: {e}"
    if "libx264" not in encoders:
        return None, f"{exe} has no libx264 encoder"
    return exe, ""


def _ffmpeg_error(what: str, stderr: bytes) -> BenchError:
    lines = [l for l in stderr.decode(errors="replace").strip().splitlines() if l.strip()]
    return BenchError(f"ffmpeg {what} failed: {lines[-1] if lines else 'no message'}")


def x264_point(frames, fps: float, crf: int, preset_args: list[str], keyint: int, ffmpeg: str = "ffmpeg",
               workdir=None, bar=None) -> dict:
    """x264 at one CRF: frames piped to ffmpeg as rgb24, coded yuv420p into a raw H.264 stream; its bytes
    counted, and it decoded back to rgb24 by ffmpeg through a pipe."""
    bar = bar or _NoBar()
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise BenchError(f"x264 yuv420p needs an even frame size, the clip is {w}x{h}")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        stream = pathlib.Path(tmp) / "out.h264"
        log = pathlib.Path(tmp) / "encode.log"
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", *preset_args,
               "-crf", str(crf), "-pix_fmt", "yuv420p"]
        if keyint > 0:
            cmd += ["-g", str(keyint)]
        cmd += ["-f", "h264", "-y", str(stream)]
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for rgb in frames:
                    proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()
            rc = proc.wait()
        if rc != 0 or not stream.exists():
            raise _ffmpeg_error("x264 encode", log.read_bytes())
        size = stream.stat().st_size
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(stream), "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-vsync", "0", "-"]
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
            dbs, n = [], w * h * 3
            for rgb in frames:
                buf = proc.stdout.read(n)
                if len(buf) < n:
                    break
                dbs.append(psnr(rgb, np.frombuffer(buf, np.uint8).reshape(h, w, 3)))
                bar.update(1)
            rest = proc.stdout.read()
            rc = proc.wait()
        if rc != 0:
            raise _ffmpeg_error("decode", log.read_bytes())
        if len(dbs) != len(frames) or rest:
            raise BenchError(f"ffmpeg decoded {len(dbs) + len(rest) // n} frames of x264's stream, "
                             f"{len(frames)} were coded")
    p = _point("crf", int(crf), [size], dbs, fps)
    p["frames"] = len(frames)
    p["kbps"] = kbps(size, len(frames), fps)
    return p


# --- the benchmark ----------------------------------------------------------------------------------

def _rate_points(points):
    """rd_plot's helpers read 'bpp'; any rate unit gives the same BD-rate (a ratio)."""
    return [{"bpp": p["kbps"], "psnr": p["psnr"]} for p in points]


def bd_rates(curves: dict) -> dict:
    """{'test vs ref': {'percent': ..., 'psnr_range_db': [lo, hi]} or a 'skipped' reason} for BD_PAIRS."""
    out = {}
    for test, ref in BD_PAIRS:
        if test not in curves or ref not in curves:
            continue
        key = f"{test} vs {ref}"
        a, b = _rate_points(curves[ref]), _rate_points(curves[test])
        if min(len(a), len(b)) < MIN_BD_POINTS:
            out[key] = {"percent": None, "skipped": f"fewer than {MIN_BD_POINTS} points on a curve"}
            continue
        rng = psnr_overlap(a, b)
        if rng is None:
            out[key] = {"percent": None, "skipped": "the PSNR ranges do not overlap"}
            continue
        out[key] = {"percent": bd_rate(a, b), "psnr_range_db": rng}
    return out


def encode_speed(curves: dict) -> dict:
    """Median encode ms and frames/s of edgecodec by frame kind, over the points of each mode."""
    out = {}
    for name in (STREAM, INTRA):
        for kind in ("key", "delta"):
            ms = [p[f"encode_ms_{kind}_median"] for p in curves.get(name, [])
                  if p.get(f"encode_ms_{kind}_median") is not None]
            if ms:
                med = float(np.median(ms))
                out[f"{name}, {kind} frames"] = {"ms_median": med, "frames_per_s": 1000 / med,
                                                 "ms_per_quality": ms}
    return out


def run_benchmark(frames, fps: float, codec=None, qualities=None, jpeg_qualities=JPEG_QUALITIES, crfs=CRFS,
                  key_interval_s: float = 2.0, x264_keyint: Optional[int] = None, ffmpeg: Optional[str] = None,
                  progress: bool = True, warn=None) -> dict:
    """All curves, BD-rates and encode speeds on the frames. ``ffmpeg=None`` looks for one; ``""`` skips x264."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    t0 = time.time()
    if codec is None:
        from edgecodec.codec import Codec
        codec = Codec.load(threads=2, encoder="int8")
    qualities = list(codec.qualities if qualities is None else qualities)
    if x264_keyint is None:
        x264_keyint = max(1, int(round(key_interval_s * fps)))
    skipped = None
    if ffmpeg is None:
        ffmpeg, why = find_ffmpeg()
        if ffmpeg is None:
            skipped = why
    elif ffmpeg == "":
        ffmpeg, skipped = None, "x264 not asked for"
    if skipped and skipped != "x264 not asked for":
        warn(f"x264 rows skipped: {skipped}")
    crfs = list(crfs) if ffmpeg else []

    n = len(frames)
    total = n * (2 * len(qualities) + len(jpeg_qualities) + len(X264_PRESETS) * len(crfs))
    bar = _NoBar()
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="frame", desc="bench_video", file=sys.stderr, dynamic_ncols=True,
                   disable=None)  # no bar where stderr is not a terminal
    curves = {STREAM: [], INTRA: [], MJPEG: []}
    try:
        for name, intra in ((STREAM, False), (INTRA, True)):
            for q in qualities:
                bar.set_postfix_str(f"{name} q{q}")
                curves[name].append(edgecodec_point(codec, frames, fps, q, intra, key_interval_s, bar=bar))
        for q in jpeg_qualities:
            bar.set_postfix_str(f"MJPEG q{q}")
            curves[MJPEG].append(mjpeg_point(frames, fps, q, bar=bar))
        if ffmpeg:
            for name, args in X264_PRESETS.items():
                curves[name] = []
                for crf in crfs:
                    bar.set_postfix_str(f"{name} crf {crf}")
                    curves[name].append(x264_point(frames, fps, crf, args, x264_keyint, ffmpeg, bar=bar))
    finally:
        if hasattr(bar, "close"):
            bar.close()
    h, w = frames[0].shape[:2]
    result = {"frames": n, "fps": fps, "width": w, "height": h, "model_id": codec.model_id.hex(),
              "encoder": codec.encoder_kind, "opencv": cv2.__version__, "threads": codec.threads, "key_interval_s": key_interval_s,
              "x264_keyint": x264_keyint if ffmpeg else None, "x264_skipped": skipped,
              "curves": curves, "bd_rate_percent": bd_rates(curves), "encode_speed": encode_speed(curves),
              "seconds": time.time() - t0}
    if ffmpeg:
        result["ffmpeg"] = _ffmpeg_version(ffmpeg)
    return result


def _ffmpeg_version(exe: str) -> str:
    try:
        first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30).stdout.splitlines()
        return first[0] if first else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# --- output -----------------------------------------------------------------------------------------

def format_table(result: dict) -> str:
    lines = [f"{result['frames']} frames {result['width']}x{result['height']} at {result['fps']:g} frames/s, "
             f"model {result['model_id']} ({result['encoder']} encoder), key interval {result['key_interval_s']:g} s",
             "", "| codec | setting | kbit/s | PSNR dB | min PSNR dB | key / delta frames | key frames' bytes "
             "| delta coded share |", "|---|---|---|---|---|---|---|---|"]
    for name, pts in result["curves"].items():
        for p in pts:
            setting = f"q {p['quality']}" if "quality" in p else f"crf {p['crf']}"
            kd = f"{p['key_frames']} / {p['delta_frames']}" if "key_frames" in p else ""
            share = f"{p['delta_coded_share']:.3f}" if p.get("delta_coded_share") is not None else ""
            kb = f"{p['key_bytes'] / p['bytes']:.0%}" if "key_bytes" in p else ""
            lines.append(f"| {name} | {setting} | {p['kbps']:.1f} | {p['psnr']:.2f} | {p['psnr_min']:.2f} | "
                         f"{kd} | {kb} | {share} |")
    lines += ["", "| BD-rate | value | PSNR range |", "|---|---|---|"]
    for key, v in result["bd_rate_percent"].items():
        if v["percent"] is None:
            lines.append(f"| {key} | n/a | {v['skipped']} |")
        else:
            lo, hi = v["psnr_range_db"]
            lines.append(f"| {key} | {v['percent']:+.1f} % | {lo:.2f} .. {hi:.2f} dB |")
    lines += ["", "| edgecodec encode | median ms | frames/s |", "|---|---|---|"]
    for key, v in result["encode_speed"].items():
        lines.append(f"| {key} | {v['ms_median']:.1f} | {v['frames_per_s']:.1f} |")
    if result.get("x264_skipped"):
        lines.append(f"\nx264 skipped: {result['x264_skipped']}")
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    rates, dbs = [], []
    for name, pts in result["curves"].items():
        if not pts:
            continue
        x, y = [p["kbps"] for p in pts], [p["psnr"] for p in pts]
        rates += x
        dbs += y
        ax.plot(x, y, marker="o", ms=3, label=name)
    ax.set_xscale("log")
    if rates:  # every point of every curve inside the axes, with a margin
        ax.set_xlim(min(rates) / 1.25, max(rates) * 1.25)
        span = max(max(dbs) - min(dbs), 1.0)
        ax.set_ylim(min(dbs) - 0.05 * span, max(dbs) + 0.05 * span)
    ax.set_xlabel("kbit/s at the clip's frame rate (from the coded bytes)")
    ax.set_ylabel("PSNR over RGB, mean per frame (dB)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{result.get('clip', 'clip')}: {result['frames']} frames {result['width']}x{result['height']} "
                 f"@ {result['fps']:g} fps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", help="video file (e.g. ../shared/data/video/vtest-480x360-10fps.avi)")
    ap.add_argument("--frames", type=int, default=200, help="the first N frames of the clip (default 200)")
    ap.add_argument("--qualities", type=_int_list, help="edgecodec qualities, e.g. 1,3,5,7 (default: all)")
    ap.add_argument("--jpeg-qualities", type=_int_list, default=JPEG_QUALITIES,
                    help=f"MJPEG qualities (default {','.join(map(str, JPEG_QUALITIES))})")
    ap.add_argument("--crfs", type=_int_list, default=CRFS, help=f"x264 CRFs (default {','.join(map(str, CRFS))})")
    ap.add_argument("--key-interval", type=float, default=2.0, help="stream mode's key interval, s (default 2)")
    ap.add_argument("--x264-keyint", type=int,
                    help="x264 key-frame interval in frames (default: the same time as --key-interval; 0: x264's)")
    ap.add_argument("--no-x264", action="store_true", help="leave out the x264 rows")
    ap.add_argument("--encoder", default="int8", choices=["int8", "float"], help="edgecodec's encoder (default int8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fps", type=float, help="frame rate (default: the clip's)")
    ap.add_argument("--json", metavar="FILE", help="write all points, BD-rates and speeds as JSON")
    ap.add_argument("--plot", metavar="FILE", help="write the rate-distortion plot (PNG; needs matplotlib)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error("--frames must be at least 1")
    if args.fps is not None and not args.fps > 0:
        ap.error("--fps must be positive")
    if args.key_interval <= 0:
        ap.error("--key-interval must be positive")
    if not args.jpeg_qualities or any(not 0 <= q <= 100 for q in args.jpeg_qualities):
        ap.error("--jpeg-qualities must be in 0..100")
    if any(not 0 <= c <= 51 for c in args.crfs):
        ap.error("--crfs must be in 0..51")

    try:
        from edgecodec.codec import Codec

        codec = Codec.load(threads=args.threads, encoder=args.encoder)
        qualities = args.qualities if args.qualities is not None else codec.qualities
        bad = [q for q in qualities if q not in codec.qualities]
        if bad or not qualities:
            ap.error(f"--qualities must be in {codec.qualities[0]}..{codec.qualities[-1]}")
        frames, fps = read_clip(args.clip, args.frames, args.fps)
        if len(frames) < args.frames:
            print(f"warning: {args.clip} has {len(frames)} frames, fewer than --frames {args.frames}", file=sys.stderr)
        result = run_benchmark(frames, fps, codec, qualities, args.jpeg_qualities, args.crfs, args.key_interval,
                               args.x264_keyint, "" if args.no_x264 else None, progress=not args.no_progress)
    except (BenchError, EdgecodecError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["clip"] = pathlib.Path(args.clip).name
    result["command"] = "python -m tools.bench_video " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(result, args.plot)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
