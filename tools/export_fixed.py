"""Fixed-shape int8 encoders for common camera sizes, beside a model folder's dynamic ones.

    python -m tools.export_fixed models --weights models/checkpoint/weights.npz --sizes 640x480,1280x720

Accelerators such as the Coral Edge TPU compile only models whose tensors all have static shapes, which
the dynamic encoders (any frame size) do not. For each size and quality this converts the same analysis
again with the input shape fixed, and with the int8 ranges read back from that quality's dynamic encoder
(its ReLU outputs' scales), so that it computes the same integers. Each file is checked against the
dynamic encoder on test frames of its size (identical latents, or nothing is written) and named in the
manifest under ``fixed_encoders`` with its SHA-256; like the fast encoder it is outside the model id.
Needs the ``train-tf`` extra (TensorFlow) and the weights the folder was exported from.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tools.export as v1  # noqa: E402  (imports TensorFlow)
from tools.codec_model import Config, KerasCodec  # noqa: E402
from tools.train import load_weights_npz  # noqa: E402

from edgecodec.models import contract  # noqa: E402
from edgecodec.models.interpreter import TFLiteModel  # noqa: E402
from edgecodec.testscene import TestScene  # noqa: E402


def hidden_tops(path: pathlib.Path) -> list[float]:
    """The [0, top] int8 range of each hidden ReLU output of an int8 encoder, in execution order (the
    analysis', then the hyper-analysis'): the convolutions whose outputs are not the pinned latents."""
    from edgecodec.models.interpreter import _Interpreter

    interp = _Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    tops = []
    for op in interp._get_ops_details():
        if op["op_name"] != "CONV_2D":
            continue
        scale, zero = tensors[op["outputs"][0]]["quantization"]
        if (scale, zero) != (1.0, 0):
            tops.append(float(np.float32(scale) * 255.0))
    return tops


def frames(width: int, height: int, n: int = 4) -> list[np.ndarray]:
    scene = TestScene(width, height)
    out = [scene.render(11 * i).astype(np.float32) for i in range(n)]
    out[0][0, 0], out[0][0, 1] = 0.0, 255.0  # the uint8 input's full range, as the dynamic export pinned it
    return out


def same_latents(a: TFLiteModel, b: TFLiteModel, images) -> bool:
    for image in images:
        x = np.clip(np.round(image), 0, 255).astype(np.uint8)[None]
        ya, yb = (sorted(m.run(x), key=lambda t: -t.shape[1]) for m in (a, b))
        if any(not np.array_equal(p, q) for p, q in zip(ya, yb)):
            return False
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model folder to add the fixed-shape encoders to")
    ap.add_argument("--weights", required=True, help="the Keras weights .npz the folder was exported from")
    ap.add_argument("--sizes", default="640x480,1280x720", help="WIDTHxHEIGHT,... (multiples of 16)")
    args = ap.parse_args(argv)
    folder = pathlib.Path(args.model)
    manifest = json.loads((folder / contract.MANIFEST).read_text())
    weights = pathlib.Path(args.weights)
    meta = json.loads(weights.with_suffix(".json").read_text())
    if meta.get("step") != manifest.get("training_step"):
        raise SystemExit(f"export_fixed: {weights} is step {meta.get('step')}, the folder was exported from step "
                         f"{manifest.get('training_step')}")
    model = KerasCodec(Config.from_dict(meta["config"]))
    model.build_all()
    load_weights_npz(model, weights)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if any(w % contract.ALIGN or h % contract.ALIGN for w, h in sizes):
        raise SystemExit(f"export_fixed: sizes must be multiples of {contract.ALIGN}")
    entries = []
    for width, height in sizes:
        images = frames(width, height)
        for q in range(len(manifest["qualities"])):
            dynamic = folder / manifest["qualities"][q]["encoder"]
            fn = v1.encoder_function(model, q, True, act_tops=hidden_tops(dynamic), size=(height, width))
            name = contract.fixed_encoder_name(q, width, height)
            (folder / name).write_bytes(v1.convert_int8(fn, images))
            if not same_latents(TFLiteModel(folder / name, 1), TFLiteModel(dynamic, 1), images):
                (folder / name).unlink()
                raise SystemExit(f"export_fixed: {name} does not compute the latents of {dynamic.name}; not written")
            digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
            entries.append({"width": width, "height": height, "quality": q, "file": name, "sha256": digest})
            print(f"wrote {name}: the same latents as {dynamic.name}", flush=True)
    manifest["fixed_encoders"] = entries
    (folder / contract.MANIFEST).write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
