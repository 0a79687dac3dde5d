"""Model v2's rate-distortion from its PyTorch weights, against WebP and AVIF on the same images in the same run.

    python -m tools.eval_torch ../shared/data/kodak --weights models/checkpoint/v2.npz --json out.json

Before a v2 export exists this is how a checkpoint is judged (and whether it is worth exporting): PSNR over
RGB of the 8-bit decoded image, the rate as the entropy models' information content of the rounded
latents (``torch_codec.estimate``; the real bytes come within about 1 % of it for v1), averaged per image.
WebP and AVIF (speed 10, the real-time setting, and 6) are measured from their bytes, and BD-rates are
taken directly against them (``rd_plot.bd_rate``). Needs the ``train`` extra.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import cv2
import numpy as np
import torch

from edgecodec.evaluate import psnr  # noqa: E402
from tools.rd_plot import bd_rate, opencv_curve, psnr_overlap, require_writers  # noqa: E402
from tools.torch_codec import Codec, Config, estimate  # noqa: E402
from tools.train_data import IMAGE_SUFFIXES  # noqa: E402

REFERENCES = {
    "WebP": (".webp", lambda q: [cv2.IMWRITE_WEBP_QUALITY, q], [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "AVIF speed 10": (".avif", lambda q: [cv2.IMWRITE_AVIF_QUALITY, q, cv2.IMWRITE_AVIF_SPEED, 10],
                      [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "AVIF speed 6": (".avif", lambda q: [cv2.IMWRITE_AVIF_QUALITY, q, cv2.IMWRITE_AVIF_SPEED, 6],
                     [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
}


def load_model(weights: pathlib.Path) -> tuple[Codec, dict]:
    meta = json.loads(weights.with_suffix(".json").read_text())
    model = Codec(Config.from_dict(meta["config"]))
    with np.load(weights) as arrays:
        model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in model.state_dict()})
    return model.eval(), meta


def v2_curve(model: Codec, images, qualities, threads: int):
    torch.set_num_threads(threads)
    points = []
    for q in qualities:
        bpp, dbs = [], []
        for img in images:
            h, w = img.shape[:2]
            padded = np.pad(img, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")
            x = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255.0
            x_hat, bits = estimate(model, x, q)
            out = np.round(x_hat[0].permute(1, 2, 0).numpy()[:h, :w] * 255.0).astype(np.uint8)
            bpp.append(float(bits[0]) / (h * w))
            dbs.append(psnr(img, out))
        points.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(dbs))})
        print(f"v2 q{q}: {points[-1]['bpp']:.3f} bpp {points[-1]['psnr']:.2f} dB", flush=True)
    return points


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="evaluation images (e.g. ../shared/data/kodak)")
    ap.add_argument("--weights", default="models/checkpoint/v2.npz", help="v2 weights (.json beside them)")
    ap.add_argument("--images", type=int, default=0, help="only the first N images (0: all)")
    ap.add_argument("--qualities", default="", help="comma-separated (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", metavar="FILE", help="write the points and BD-rates as JSON")
    args = ap.parse_args(argv)
    require_writers(REFERENCES)
    paths = sorted(p for p in pathlib.Path(args.folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"eval_torch: no images in {args.folder}")
    paths = paths[:args.images] if args.images else paths
    images = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths]
    weights = pathlib.Path(args.weights)
    if not weights.exists():
        raise SystemExit(f"eval_torch: no weights at {weights}")
    model, meta = load_model(weights)
    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else range(len(model.cfg.lambdas))
    t0 = time.time()
    curves = {"edgecodec v2": v2_curve(model, images, qualities, args.threads)}
    for name, (ext, params, qs) in REFERENCES.items():
        curves[name] = opencv_curve(images, ext, params, qs)
    v2 = curves["edgecodec v2"]
    bd = {name: {"bd_rate": bd_rate(curves[name], v2), "psnr_range": psnr_overlap(curves[name], v2)}
          for name in REFERENCES}
    for name, r in bd.items():
        print(f"v2 against {name}: " + (f"{r['bd_rate']:+.1f} % BD-rate over {r['psnr_range']} dB"
                                        if r["bd_rate"] is not None else "no common PSNR range"))
    result = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "weights": str(weights),
              "step": meta.get("step"), "images": [p.name for p in paths], "curves": curves, "bd_rate": bd,
              "seconds": round(time.time() - t0, 1)}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
