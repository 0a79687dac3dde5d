"""Add a live decoder (trained by tools/train_live.py) to an exported model folder.

    python -m tools.export_live runs/live/live.npz -o models [--kodak ../shared/data/kodak]

Writes ``decoder_live.tflite`` and names it in the manifest with its SHA-256, widths and step. The model id
does not change: the live decoder reads the same latents, so every stream the folder's encoders wrote
decodes with either synthesis. Refuses weights trained on another checkpoint's latents than the folder's.
With ``--kodak`` the live decoder's rate-distortion points are measured and recorded beside the full one's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys

from tools.codec_model import Config  # noqa: E402
from tools.export import convert_float, decoder_function  # noqa: E402
from tools.train_live import assign_weights, build_live  # noqa: E402

from edgecodec.models import contract  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="live.npz written by tools/train_live.py (its .json beside it)")
    ap.add_argument("-o", "--out", default="models", help="exported model folder to add it to")
    ap.add_argument("--kodak", help="measure the live decoder on this folder and record it in the manifest")
    args = ap.parse_args(argv)

    import numpy as np

    weights = pathlib.Path(args.weights)
    meta = json.loads(weights.with_suffix(".json").read_text())
    out = pathlib.Path(args.out)
    manifest_path = out / contract.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    if meta.get("codec_step") != manifest.get("training_step"):
        print(f"export_live: {weights} was trained on the latents of step {meta.get('codec_step')}, "
              f"the model in {out} is step {manifest.get('training_step')}", file=sys.stderr)
        return 1
    cfg = Config.from_dict(manifest["config"])
    live = build_live(cfg, meta["widths"])
    with np.load(weights) as data:
        assign_weights(live, {k: data[k] for k in data.files})
    blob = convert_float(decoder_function(live, cfg.latent))
    (out / contract.LIVE_DECODER).write_bytes(blob)
    manifest["live_decoder"] = {"file": contract.LIVE_DECODER, "sha256": hashlib.sha256(blob).hexdigest(),
                                "widths": meta["widths"], "training_step": meta["step"]}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"wrote {out / contract.LIVE_DECODER} (widths {meta['widths']}, step {meta['step']})", flush=True)

    if args.kodak:
        from edgecodec.evaluate import evaluate_folder

        report = evaluate_folder(args.kodak, model_dir=out, decoder="live")
        manifest["live_decoder"]["kodak"] = report["per_quality"]
        manifest_path.write_text(json.dumps(manifest, indent=1))
        for row in report["per_quality"]:
            print(f"q{row['quality']}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
