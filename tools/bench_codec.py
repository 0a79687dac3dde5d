"""Encode/decode speed of the codec on 640x480 frames, next to OpenCV's JPEG on the same frames in the same run.

    python -m tools.bench_codec [--frames DIR] [--quality 4] [--threads 2] [--encoder int8] [--analysis full]
                                [--decoder full] [--json]

Frames are 640x480 centre crops of the images in DIR (e.g. ../shared/data/kodak), or a synthetic scene when
no folder is given. Encode = analysis inference + hyper-synthesis + range coding + container; decode = the
reverse including the float synthesis. Each stage is also timed on its own (range coding as one pass over
all latents; ``context`` is the checkerboard model's second-pass corrections, when the model has one).

Shared machines slow down and speed up by tens of percent from minute to minute. So the four main
measurements (edgecodec encode and decode, JPEG encode and decode) take turns in ``--passes`` short
passes; each figure is the median over its passes (all passes are in the JSON), and each ratio to JPEG
is the median of the ratios within a pass, so both sides of a ratio saw the same machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import cv2
import numpy as np

from edgecodec import entropy  # noqa: E402
from edgecodec.codec import Codec, pad_image  # noqa: E402
from edgecodec.evaluate import list_images, psnr  # noqa: E402
from edgecodec.imageio import read_image  # noqa: E402
from edgecodec.models import contract  # noqa: E402

W, H = 640, 480


def load_frames(folder, n=8):
    if folder:
        frames = []
        for path in list_images(folder)[:n]:
            img = read_image(path)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            img = img[:, :, :3]
            if img.shape[0] > img.shape[1]:
                img = np.ascontiguousarray(np.rot90(img))
            if img.shape[0] < H or img.shape[1] < W:
                img = cv2.resize(img, (max(W, img.shape[1]), max(H, img.shape[0])))
            y0, x0 = (img.shape[0] - H) // 2, (img.shape[1] - W) // 2
            frames.append(np.ascontiguousarray(img[y0:y0 + H, x0:x0 + W]))
        if frames:
            return frames
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n):
        img = np.stack([128 + 60 * np.sin((xx + 9 * t) / 40), 128 + 60 * np.cos(yy / 30 + t / 3),
                        100 + 50 * np.sin((xx + yy) / 60)], axis=2) + rng.normal(0, 4, (H, W, 3))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def rate(fn, items, seconds, warm_up=True):
    """Calls per second of fn over items, cycling until `seconds` have passed (after one warm-up pass)."""
    if warm_up:
        for it in items[:2]:
            fn(it)
    n, t0 = 0, time.perf_counter()
    while True:
        fn(items[n % len(items)])
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds and n >= len(items):
            return n / el


def take_turns(tasks: dict, passes: int, seconds: float) -> dict:
    """Calls per second of each (fn, items) in ``tasks`` in each of ``passes`` rounds, the tasks taking
    turns within a round, ``seconds`` in all per task."""
    for fn, items in tasks.values():
        for it in items[:2]:
            fn(it)
    out = {name: [] for name in tasks}
    for _ in range(passes):
        for name, (fn, items) in tasks.items():
            out[name].append(rate(fn, items, seconds / passes, warm_up=False))
    return out


def model_gmacs(manifest: dict, analysis: str, decoder: str) -> dict:
    """GMAC per 640x480 frame of the parts this run uses (``contract.gmacs``): the fast analysis and the
    live synthesis with the widths their manifest entries give."""
    config = dict(manifest["config"])
    if analysis == "fast":
        w1, w2 = manifest["fast_encoder"]["widths"]
        config["n_enc"] = [w1, w2, config["n_enc"][2]]
    if decoder == "live":
        config["n_dec"] = manifest["live_decoder"]["widths"]
        config["dec_res"] = [0] * len(config["n_dec"])
    g = contract.gmacs(config, H, W)
    return {"encoder": round(g["edge_encoder"], 3), "entropy_model": round(g["hyper_synthesis"] + g["context"], 3),
            "decoder": round(g["synthesis"], 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", help="folder of images to crop 640x480 frames from (default: synthetic)")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    ap.add_argument("--passes", type=int, default=5, help="turns the main measurements take (median reported)")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--model", help="model folder (default: shipped models)")
    ap.add_argument("--encoder", choices=("int8", "float"), default="int8", help="encoder precision (default int8)")
    ap.add_argument("--analysis", choices=("full", "fast"), default="full",
                    help="the full analysis or the model's fast one (default full)")
    ap.add_argument("--decoder", choices=("full", "live"), default="full",
                    help="synthesis for decode: full (default) or the model's faster live one")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    cv2.setNumThreads(args.threads)
    frames = load_frames(args.frames)
    codec = Codec.load(args.model, threads=args.threads, encoder=args.encoder, analysis=args.analysis,
                       decoder=args.decoder)
    q = args.quality
    packets = [codec.encode(f, q) for f in frames]
    bundle = codec.bundle
    padded = [pad_image(f) for f in frames]
    latents = [codec.analyse(p, q) for p in padded]
    predicted = [bundle.hyper.predict(z, q, y.shape[:2]) for y, z in latents]
    indices = [idx for idx, _ in predicted]
    symbols = [y - mean for (y, _), (_, mean) in zip(latents, predicted)]
    coded = [entropy.encode(s.ravel(), i.ravel(), bundle.cdf_y) for s, i in zip(symbols, indices)]

    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, args.jpeg_quality]
    jpegs = [cv2.imencode(".jpg", b, jpeg_params)[1] for b in bgr]
    runs = take_turns({
        "encode": (lambda f: codec.encode(f, q), frames),
        "jpeg_encode": (lambda b: cv2.imencode(".jpg", b, jpeg_params), bgr),
        "decode": (codec.decode, packets),
        "jpeg_decode": (lambda j: cv2.imdecode(j, cv2.IMREAD_COLOR), jpegs),
    }, max(1, args.passes), args.seconds)
    median = {name: float(np.median(fps)) for name, fps in runs.items()}

    res = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "gmac": model_gmacs(bundle.manifest, args.analysis, args.decoder),
        "frame": f"{W}x{H}", "frames": len(frames), "quality": q, "encoder": args.encoder,
        "analysis": args.analysis, "decoder": args.decoder,
        "source": args.frames or "synthetic",
        "passes": max(1, args.passes),
        "edgecodec": {
            "encode_fps": median["encode"],
            "decode_fps": median["decode"],
            "encode_fps_passes": runs["encode"],
            "decode_fps_passes": runs["decode"],
            "bpp": float(np.mean([len(p) * 8 / (W * H) for p in packets])),
            "psnr": float(np.mean([psnr(f, codec.decode(p)) for f, p in zip(frames, packets)])),
            "stage_ms": {
                "analysis": 1000 / rate(lambda p: codec.analyse(p, q), padded, args.seconds / 2),
                "hyper_synthesis": 1000 / rate(lambda l: bundle.hyper.predict(l[1], q, l[0].shape[:2]), latents,
                                               args.seconds / 2),
                "range_encode": 1000 / rate(
                    lambda i: entropy.encode(symbols[i].ravel(), indices[i].ravel(), bundle.cdf_y),
                    list(range(len(frames))), args.seconds / 2),
                "range_decode": 1000 / rate(
                    lambda i: entropy.decode(coded[i], indices[i].ravel(), bundle.cdf_y),
                    list(range(len(frames))), args.seconds / 2),
                "synthesis": 1000 / rate(
                    lambda l: bundle.decoder(args.decoder, args.threads).run(
                        (l[0].astype(np.float32) * bundle.gains[1][q])[None]),
                    latents, args.seconds / 2),
            },
        },
    }
    if bundle.context is not None:
        from edgecodec.models.context import passes

        res["edgecodec"]["stage_ms"]["context"] = 1000 / rate(
            lambda y: bundle.context.sums(y, q, passes(*y.shape[:2])[1], args.threads), [y for y, _ in latents],
            args.seconds / 2)
    res["jpeg"] = {
        "quality": args.jpeg_quality,
        "encode_fps": median["jpeg_encode"],
        "decode_fps": median["jpeg_decode"],
        "bpp": float(np.mean([j.size * 8 / (W * H) for j in jpegs])),
    }
    ec = res["edgecodec"]
    res["ratio_to_jpeg"] = {
        kind: float(np.median(np.array(runs[kind]) / np.array(runs[f"jpeg_{kind}"]))) for kind in ("encode", "decode")}
    res["targets"] = {"encode_fps>=30": ec["encode_fps"] >= 30, "decode_fps>=15": ec["decode_fps"] >= 15}

    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    jp = res["jpeg"]
    print(f"{W}x{H}, {len(frames)} frames ({res['source']}), quality {q}, {args.threads} threads, "
          f"median of {res['passes']} passes")
    gm = res["gmac"]
    print(f"GMAC a frame: encoder {gm['encoder']:.2f} ({res['analysis']} analysis), entropy model "
          f"{gm['entropy_model']:.2f}, decoder {gm['decoder']:.2f} ({res['decoder']} synthesis)")
    print(f"edgecodec: encode {ec['encode_fps']:.1f} fps ({res['analysis']} {res['encoder']} encoder), "
          f"decode {ec['decode_fps']:.1f} fps ({res['decoder']} decoder), "
          f"{ec['bpp']:.3f} bpp, {ec['psnr']:.2f} dB")
    print("  passes: encode " + " ".join(f"{v:.1f}" for v in ec["encode_fps_passes"])
          + ", decode " + " ".join(f"{v:.1f}" for v in ec["decode_fps_passes"]))
    print("  stages (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ec["stage_ms"].items()))
    print(f"OpenCV JPEG q{jp['quality']}: encode {jp['encode_fps']:.1f} fps, decode {jp['decode_fps']:.1f} fps, "
          f"{jp['bpp']:.3f} bpp")
    print(f"ratio edgecodec/JPEG: encode {res['ratio_to_jpeg']['encode']:.2f}x, "
          f"decode {res['ratio_to_jpeg']['decode']:.2f}x")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in res["targets"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
