"""Add a fast encoder (trained by tools/train_fast.py) to an exported model folder.

    python -m tools.export_fast runs/fast/fast.npz --calib ../shared/data/train -o models \
        [--kodak ../shared/data/kodak]

Writes ``encoder_fast.tflite`` (float) and ``encoder_fast_q<k>.tflite`` (int8, one per quality, calibrated
on ``--calib`` crops as ``tools/export.py`` does) and names them in the manifest with their SHA-256, the
widths and the step. The model id does not change: the decoder the fast encoder learned against is the
folder's own, frozen. Refuses weights trained against another codec step than the folder's. With
``--kodak`` its rate-distortion points (full decoder) are measured and recorded.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys

from tools.codec_model import Config  # noqa: E402
from tools.export import activation_ranges, calibration_crops, convert_float, convert_int8, encoder_function  # noqa: E402
from tools.train_fast import assign_weights, build_fast  # noqa: E402

from edgecodec.models import contract  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="fast.npz written by tools/train_fast.py (its .json beside it)")
    ap.add_argument("--calib", nargs="+", required=True, help="training image folders for int8 calibration")
    ap.add_argument("--init", default="models/checkpoint/weights.npz",
                    help="the codec's weights the fast encoder was trained against (for its gains)")
    ap.add_argument("-o", "--out", default="models", help="exported model folder to add it to")
    ap.add_argument("--kodak", help="measure the fast encoder on this folder and record it in the manifest")
    args = ap.parse_args(argv)

    import numpy as np

    weights = pathlib.Path(args.weights)
    meta = json.loads(weights.with_suffix(".json").read_text())
    codec_meta = json.loads(pathlib.Path(args.init).with_suffix(".json").read_text())
    out = pathlib.Path(args.out)
    manifest_path = out / contract.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    steps = {meta.get("codec_step"), codec_meta.get("step"), manifest.get("training_step")}
    if len(steps) != 1:
        print(f"export_fast: {weights} was trained against codec step {meta.get('codec_step')}, {args.init} "
              f"is step {codec_meta.get('step')}, the model in {out} step {manifest.get('training_step')}",
              file=sys.stderr)
        return 1
    cfg = Config.from_dict(manifest["config"])
    model = build_fast(cfg, meta["widths"], args.init)
    with np.load(weights) as data:
        assign_weights(model, {k: data[k] for k in data.files})

    def write(name: str, blob: bytes) -> dict:
        (out / name).write_bytes(blob)
        print(f"wrote {out / name}", flush=True)
        return {"file": name, "sha256": hashlib.sha256(blob).hexdigest()}

    crops = calibration_crops(args.calib)
    act_tops = activation_ranges(model, crops)
    int8 = []
    for q in range(len(cfg.lambdas)):
        blob = convert_int8(encoder_function(model, q, True, act_tops=act_tops), crops)
        int8.append({"quality": q, **write(contract.fast_encoder_name(q), blob)})
    entry = {"float": write(contract.FAST_ENCODER, convert_float(encoder_function(model, None, False))),
             "int8": int8, "widths": meta["widths"], "training_step": meta["step"]}
    manifest["fast_encoder"] = entry
    manifest_path.write_text(json.dumps(manifest, indent=1))

    if args.kodak:
        from edgecodec.evaluate import evaluate_folder

        for precision in contract.PRECISIONS:
            report = evaluate_folder(args.kodak, model_dir=out, encoder=precision, analysis="fast")
            entry[f"kodak_{precision}"] = report["per_quality"]
            for row in report["per_quality"]:
                print(f"{precision} q{row['quality']}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB", flush=True)
        manifest_path.write_text(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
