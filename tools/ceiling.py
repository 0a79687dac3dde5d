#!/usr/bin/env python3
"""Where a checkpoint's quality tops out: the transforms' PSNR ceiling, with no quantization at all.

    python -m tools.ceiling runs/main/weights.npz ../shared/data/kodak [--images 4] [--steps 300] [--json]

For each image, three PSNRs at the top quality:
  coded      g_s(round(y * gain) * inv_gain), what the codec reconstructs (before int8 effects);
  encoder    g_s(y * gain * inv_gain): the latents unrounded, i.e. with infinite rate;
  decoder    g_s(y*) with y* found by gradient descent on the latents themselves (Adam, --steps), an
             estimate of the best any encoder could feed this decoder.
``encoder`` far below ``decoder`` means the analysis transform leaves quality behind (an amortization
gap, Cremer et al. 2018); ``decoder`` close to ``encoder`` means the synthesis transform is the limit,
whatever the rate. Both guide where added capacity pays. Needs the ``train-tf`` extra (TensorFlow).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tools.codec_model import Config, KerasCodec  # noqa: E402
from tools.train import IMAGE_SUFFIXES, load_weights_npz  # noqa: E402


def psnr(x_hat: np.ndarray, x: np.ndarray) -> float:
    mse = np.mean((np.round(np.clip(x_hat, 0, 1) * 255) - np.round(x * 255)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-10)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="weights.npz from tools/train.py (its .json beside it)")
    ap.add_argument("images", help="folder of evaluation images (e.g. ../shared/data/kodak)")
    ap.add_argument("--images", dest="count", type=int, default=4, help="how many images (default 4)")
    ap.add_argument("--crop", type=int, default=256, help="centre crop side, to keep it quick (default 256)")
    ap.add_argument("--steps", type=int, default=300, help="latent optimization steps (default 300)")
    ap.add_argument("--quality", type=int, default=-1, help="quality index (default: the highest)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    weights = pathlib.Path(args.weights)
    if not weights.exists() or not weights.with_suffix(".json").exists():
        print(f"ceiling: {weights} and its .json are needed", file=sys.stderr)
        return 1
    cfg = Config.from_dict(json.loads(weights.with_suffix(".json").read_text())["config"])
    model = KerasCodec(cfg)
    model.build_all()
    load_weights_npz(model, weights)
    q = args.quality % len(cfg.lambdas)
    gain, inv_gain = tf.exp(model.log_gain[q]), tf.exp(model.log_inv_gain[q])

    folder = pathlib.Path(args.images)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        print(f"ceiling: no images in {args.images}", file=sys.stderr)
        return 1
    rows = []
    for path in files[:args.count]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        c = min(args.crop, h, w) // 16 * 16
        top, left = (h - c) // 2, (w - c) // 2
        x = img[top:top + c, left:left + c, ::-1][None].astype(np.float32) / 255.0
        y, _ = model.analyse(tf.constant(x))
        latent = tf.Variable(y * gain * inv_gain)
        row = {"image": path.name, "coded": psnr(model.g_s(tf.round(y * gain) * inv_gain).numpy(), x),
               "encoder": psnr(model.g_s(latent).numpy(), x)}
        opt = tf.keras.optimizers.Adam(1e-2)
        for _ in range(args.steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model.g_s(latent) - x))
            opt.apply_gradients([(tape.gradient(loss, latent), latent)])
        row["decoder"] = psnr(model.g_s(latent).numpy(), x)
        rows.append(row)
        if not args.json:
            print(f"{path.name}: coded {row['coded']:.2f} dB, encoder ceiling {row['encoder']:.2f}, "
                  f"decoder ceiling {row['decoder']:.2f}", flush=True)
    mean = {k: round(float(np.mean([r[k] for r in rows])), 2) for k in ("coded", "encoder", "decoder")}
    if args.json:
        print(json.dumps({"weights": str(weights), "quality": q, "crop": args.crop, "steps": args.steps,
                          "images": rows, "mean": mean}, indent=1))
    else:
        print(f"mean over {len(rows)} images at quality {q}: coded {mean['coded']} dB, encoder ceiling "
              f"{mean['encoder']}, decoder ceiling {mean['decoder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
