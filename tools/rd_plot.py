"""Rate-distortion curves and BD-rates on an image folder: edgecodec's encoders and decoders vs OpenCV codecs.

    python -m tools.rd_plot ../shared/data/kodak -o docs/rd_kodak.png [--json docs/rd_kodak.json]

Every point is measured in this run: bpp from the bytes each encoder wrote (edgecodec's container
header included), PSNR over RGB on the decoded image, both averaged per image. BD-rate follows
Bjontegaard (VCEG-M33): cubic fits of log-rate against PSNR, integrated over the PSNR range both
curves cover; negative means fewer bits than the reference at equal quality.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import cv2
import numpy as np

from edgecodec.codec import Codec  # noqa: E402
from edgecodec.evaluate import evaluate_folder, list_images, psnr  # noqa: E402
from edgecodec.imageio import read_image  # noqa: E402
from edgecodec.models import ModelBundle  # noqa: E402

OPENCV_CODECS = {
    "JPEG": (".jpg", lambda q: [cv2.IMWRITE_JPEG_QUALITY, q], [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "WebP": (".webp", lambda q: [cv2.IMWRITE_WEBP_QUALITY, q], [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "AVIF speed 10": (".avif", lambda q: [cv2.IMWRITE_AVIF_QUALITY, q, cv2.IMWRITE_AVIF_SPEED, 10],
                      [10, 20, 30, 40, 50, 60, 70, 80, 90]),  # the real-time setting
    "AVIF speed 6": (".avif", lambda q: [cv2.IMWRITE_AVIF_QUALITY, q, cv2.IMWRITE_AVIF_SPEED, 6],
                     [10, 20, 30, 40, 50, 60, 70, 80, 90]),
}


def require_writers(references) -> None:
    """Stop with one line where this OpenCV cannot write a reference's format: the comparison would be
    missing what users pick. (OpenCV 4.11, which pip chooses beside the ``train`` extra because
    compressai pins numpy<2, has no AVIF; 5.x does and runs on numpy 1.26 too.)"""
    missing = sorted({ext for ext, _, _ in references.values() if not cv2.haveImageWriter(ext)})
    if missing:
        raise SystemExit(f"OpenCV {cv2.__version__} cannot write {', '.join(missing)}: "
                         "pip install --no-deps 'opencv-python-headless>=5' (see README, Training)")


def opencv_curve(images, ext, params, qualities):
    points = []
    for q in qualities:
        bpp, dbs = [], []
        for img in images:
            ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params(q))
            if not ok:
                raise RuntimeError(f"OpenCV cannot encode {ext}")
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            bpp.append(buf.size * 8 / (img.shape[0] * img.shape[1]))
            dbs.append(psnr(img, out))
        points.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(dbs))})
    return points


def psnr_overlap(ref, test):
    """[low, high] PSNR both curves cover (where bd_rate integrates), or None."""
    lo = max(min(p["psnr"] for p in ref), min(p["psnr"] for p in test))
    hi = min(max(p["psnr"] for p in ref), max(p["psnr"] for p in test))
    return [round(lo, 2), round(hi, 2)] if hi > lo else None


def bd_rate(ref, test):
    """Bjontegaard delta rate of `test` against `ref` in percent; None when the PSNR ranges do not overlap."""
    r1, d1 = np.log([p["bpp"] for p in ref]), np.array([p["psnr"] for p in ref])
    r2, d2 = np.log([p["bpp"] for p in test]), np.array([p["psnr"] for p in test])
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if hi <= lo:
        return None
    p1, p2 = np.polyfit(d1, r1, 3), np.polyfit(d2, r2, 3)
    i1, i2 = np.polyint(p1), np.polyint(p2)
    avg1 = (np.polyval(i1, hi) - np.polyval(i1, lo)) / (hi - lo)
    avg2 = (np.polyval(i2, hi) - np.polyval(i2, lo)) / (hi - lo)
    return float((np.exp(avg2 - avg1) - 1) * 100)


def plot(curves, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for name, pts in curves.items():
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], marker="o", ms=3, label=name)
    ax.set_xscale("log")  # every point of every curve, the low rates not squeezed into a corner
    ax.set_xlabel("bits per pixel (from the encoded bytes), log scale")
    ax.set_ylabel("PSNR over RGB (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="evaluation images (e.g. ../shared/data/kodak)")
    ap.add_argument("-o", "--out", default="rd.png", help="plot file (PNG); needs matplotlib")
    ap.add_argument("--json", metavar="FILE", help="also write all points and BD-rates as JSON")
    ap.add_argument("--model", help="model folder (default: shipped models)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-live", dest="live", action="store_false",
                    help="leave out the live decoder's curve (measured by default when the model has one)")
    ap.add_argument("--no-fast", dest="fast", action="store_false",
                    help="leave out the fast encoder's curves (measured by default when the model has one)")
    args = ap.parse_args(argv)
    require_writers(OPENCV_CODECS)

    t0 = time.time()
    images = [read_image(p) for p in list_images(args.folder)]
    images = [np.repeat(i[:, :, None], 3, 2) if i.ndim == 2 else i[:, :, :3] for i in images]
    curves = {}
    int8, flt, live = "edgecodec (int8 encoder)", "edgecodec (float encoder)", "edgecodec (int8, live decoder)"
    fast_int8, fast_flt = "edgecodec (fast int8 encoder)", "edgecodec (fast float encoder)"
    runs = [("int8", "full", "full", int8), ("float", "full", "full", flt)]
    bundle = ModelBundle.load(args.model)
    if args.live and bundle.has_live_decoder:
        runs.append(("int8", "full", "live", live))
    if args.fast and bundle.has_fast_encoder:
        runs += [("int8", "fast", "full", fast_int8), ("float", "fast", "full", fast_flt)]
    for encoder, analysis, decoder, label in runs:
        codec = Codec.load(args.model, threads=args.threads, encoder=encoder, decoder=decoder, analysis=analysis)
        report = evaluate_folder(args.folder, codec=codec)
        curves[label] = [{k: r[k] for k in ("quality", "bpp", "psnr")} for r in report["per_quality"]]
        model_id = report["model_id"]
        print(f"{label}: done ({time.time() - t0:.0f} s)", file=sys.stderr)
    ours = list(curves)
    for name, (ext, params, qualities) in OPENCV_CODECS.items():
        curves[f"{name} (OpenCV {cv2.__version__})"] = opencv_curve(images, ext, params, qualities)
        print(f"{name}: done ({time.time() - t0:.0f} s)", file=sys.stderr)

    names = list(curves)
    jpeg = next(n for n in names if n.startswith("JPEG"))
    table = {n: {"vs JPEG": bd_rate(curves[jpeg], curves[n])} for n in names}
    table[int8]["vs float encoder"] = bd_rate(curves[flt], curves[int8])
    if live in curves:
        table[live]["vs full decoder"] = bd_rate(curves[int8], curves[live])
    for fast, full in ((fast_int8, int8), (fast_flt, flt)):
        if fast in curves:
            table[fast]["vs full encoder"] = bd_rate(curves[full], curves[fast])
    ranges = {n: {"vs JPEG": psnr_overlap(curves[jpeg], curves[n])} for n in names if n != jpeg}
    for ref in names[len(ours) + 1:]:
        short = ref.rsplit(" (OpenCV", 1)[0]
        for n in ours:  # directly against what users would pick instead, each over its own common range
            table[n][f"vs {short}"] = bd_rate(curves[ref], curves[n])
            ranges[n][f"vs {short}"] = psnr_overlap(curves[ref], curves[n])
    result = {"folder": args.folder, "images": len(images), "model_id": model_id, "curves": curves,
              "bd_rate_percent": table, "bd_psnr_range_db": ranges, "seconds": time.time() - t0}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    if not args.no_plot:
        plot(curves, args.out, f"{pathlib.Path(args.folder).name}: {len(images)} images, model {model_id}")
    columns = list(dict.fromkeys(k for n in names for k in table[n]))
    print(f"| codec | {' | '.join(columns)} |")
    print("|---|" + "---|" * len(columns))
    for n in names:
        cells = [("%+.1f%%" % table[n][k]) if table[n].get(k) is not None else "n/a" for k in columns]
        print(f"| {n} | {' | '.join(cells)} |")
    for n, per_ref in ranges.items():
        for ref, r in per_ref.items():
            if r:
                print(f"{n} {ref}: BD-rate over {r[0]:.2f} .. {r[1]:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
