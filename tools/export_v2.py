"""Export model v2 (PyTorch weights) into a run-time model folder: the same contract as v1's folders.

    python -m tools.export_v2 models/checkpoint/v2.npz --calib ../shared/data/train -o runs/v2_model \\
        [--kodak ../shared/data/kodak]

The folder it writes is what ``edgecodec.models.ModelBundle`` loads (``docs/models.md``): int8 encoders per
quality (uint8 RGB in, int8 latents and hyper-latents out, pinned to scale 1), the float encoder, the float
synthesis, the integer hyper-synthesis and context (``hyper.npz``), the CDF tables and a manifest. The
TFLite conversion and the integer quantization are ``tools/export.py``'s, fed with arrays taken from the
PyTorch model instead of a Keras one. What v2 changes:

* weights move from PyTorch's (out, in, kh, kw) to TensorFlow's (kh, kw, in, out), and the output
  channels of each convolution before a ``PixelShuffle`` are reordered for TensorFlow's depth-to-space,
  which orders sub-pixels before channels;
* inverse GDN takes CompressAI's effective beta and gamma; the synthesis has residual blocks;
* the hyper-latents' tables are CompressAI's ``EntropyBottleneck`` discretized per channel over the
  integers the int8 encoder can write (v1: a logistic per channel).

v2's latents must fit int8 for this folder format (v1's runtime): ``--check`` reports how many are
clipped at each quality. Needs both training extras: ``train`` (PyTorch, CompressAI) and ``train-tf``
(TensorFlow). PyTorch is imported first: the other order crashes (TensorFlow 2.21 with torch 2.14).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib

import numpy as np
import torch  # noqa: F401  (before TensorFlow: see above)

from tools.eval_torch import load_model  # noqa: E402
from tools.torch_codec import CROSS_TAPS, ResBlock, SameConv2d  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tools.export as v1  # noqa: E402  (imports TensorFlow)
import tensorflow as tf  # noqa: E402

from edgecodec.entropy import CdfTables  # noqa: E402
from edgecodec.models import contract  # noqa: E402

Z_RANGE = 127  # the hyper-latents the int8 encoder writes are clipped to +-127


def hwio(conv) -> tuple[np.ndarray, np.ndarray]:
    return conv.weight.detach().numpy().transpose(2, 3, 1, 0).copy(), conv.bias.detach().numpy().copy()


def shuffle_order(channels: int) -> np.ndarray:
    """Output-channel order that turns a convolution feeding PyTorch's PixelShuffle(2) (channel c * 4 +
    sub-pixel) into one feeding TensorFlow's depth_to_space (sub-pixel * C + c)."""
    c = channels // 4
    t = np.arange(channels)
    return (t % c) * 4 + t // c


def shuffled(conv) -> tuple[np.ndarray, np.ndarray]:
    k, b = hwio(conv)
    order = shuffle_order(k.shape[3])
    return k[..., order], b[order]


def encoder_lists(model):
    """(analysis, hyper-analysis) as (HWIO kernel, bias, stride) lists, the analysis' last convolution last."""
    convs = [m for m in model.g_a if isinstance(m, SameConv2d)] + [model.g_a_out]
    ga = [(*hwio(c), c.stride[0]) for c in convs]
    ha = [(*hwio(c), c.stride[0]) for c in model.h_a if isinstance(c, SameConv2d)]
    return ga, ha


def synthesis_steps(model) -> list[tuple]:
    """``export.decoder_from_steps`` steps of the PyTorch synthesis."""
    mods = list(model.g_s)
    steps = []
    for i, m in enumerate(mods):
        if isinstance(m, SameConv2d):
            before_shuffle = i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.PixelShuffle)
            steps.append(("conv", *(shuffled(m) if before_shuffle else hwio(m))))
        elif isinstance(m, torch.nn.PixelShuffle):
            steps.append(("d2s",))
        elif isinstance(m, ResBlock):
            steps.append(("res", *hwio(m.conv1), *hwio(m.conv2)))
        else:  # CompressAI's GDN(inverse=True): norm_i = beta_i + sum_j gamma[i, j] x_j^2
            with torch.no_grad():
                beta = m.beta_reparam(m.beta).numpy()
                gamma = m.gamma_reparam(m.gamma).numpy()
            steps.append(("igdn", gamma.T.copy(), beta))
    return steps


def hyper_kernels(model) -> list[tuple[np.ndarray, np.ndarray]]:
    convs = [m for m in model.h_s if isinstance(m, SameConv2d)]
    return [shuffled(c) for c in convs[:-1]] + [hwio(convs[-1])]


def hyper_peaks(model, z_samples) -> list[float]:
    """Each hidden hyper-synthesis layer's activation peak (99.999th percentile) on real hyper-latents."""
    acts: dict[int, list[np.ndarray]] = {}
    with torch.no_grad():
        for z in z_samples:
            h = torch.from_numpy(z.astype(np.float32)).permute(2, 0, 1)[None]
            k = 0
            for m in model.h_s:
                h = m(h)
                if isinstance(m, torch.nn.ReLU):
                    acts.setdefault(k, []).append(h.numpy().ravel())
                    k += 1
    return [float(np.percentile(np.concatenate(acts[k]), 99.999)) for k in sorted(acts)]


def context_arrays(model) -> tuple[np.ndarray, np.ndarray]:
    """Taps (4, M, 2M) in the runtime's order (up, left, right, down) and bias (2M)."""
    w = model.ctx.weight.detach().numpy()  # (2M, M, 3, 3)
    return np.stack([w[:, :, r, c].T for r, c in CROSS_TAPS]), model.ctx.bias.detach().numpy()


def bottleneck_tables(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hyper-latent channel, the bottleneck's probabilities of the integers -127..127, trimmed to
    where the tails hold more than 1e-9 (the rest is escape-coded): (pmfs, offsets, lengths)."""
    eb = model.entropy_z
    values = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float32)
    channels = eb.channels if hasattr(eb, "channels") else eb._bias0.shape[0]
    with torch.no_grad():
        lik = eb._likelihood(values.repeat(channels, 1)[:, None, :])[0][:, 0, :].double().numpy()
    pmfs, offsets, lengths = [], [], []
    for row in lik:
        keep = np.flatnonzero(row > 1e-9)
        lo, hi = (keep[0], keep[-1]) if len(keep) else (Z_RANGE, Z_RANGE)
        pmfs.append(row[lo:hi + 1])
        offsets.append(lo - Z_RANGE)
        lengths.append(hi - lo + 1)
    width = max(lengths)
    padded = np.zeros((len(pmfs), width))
    for i, p in enumerate(pmfs):
        padded[i, :len(p)] = p
    return padded, np.array(offsets, np.int32), np.array(lengths, np.int32)


def z_samples(model, crops) -> list[np.ndarray]:
    """Rounded hyper-latents (H, W, C) of the calibration crops."""
    out = []
    with torch.no_grad():
        for c in crops:
            x = torch.from_numpy(c / 255.0).permute(2, 0, 1)[None].float()
            _, features = model.analyse(x)
            out.append(np.clip(np.round(model.h_a(features)[0].permute(1, 2, 0).numpy()), -Z_RANGE, Z_RANGE))
    return out


def export(weights: pathlib.Path, calib, out: pathlib.Path, kodak=None) -> dict:
    model, meta = load_model(weights)
    cfg = model.cfg
    out.mkdir(parents=True, exist_ok=True)
    ga, ha = encoder_lists(model)
    log_gain = model.log_gain.detach().numpy()
    gains = np.exp(log_gain.astype(np.float64))
    crops = v1.calibration_crops(calib)
    act_tops = v1.activation_ranges_from(v1.encoder_layers(ga, ha, log_gain, None), True, crops)
    qualities = []
    for q in range(len(cfg.lambdas)):
        fn = v1.encoder_function_from(v1.encoder_layers(ga, ha, log_gain, q), q, True, True, act_tops)
        name = f"encoder_q{q}.tflite"
        (out / name).write_bytes(v1.convert_int8(fn, crops))
        qualities.append({"quality": q, "lambda": cfg.lambdas[q], "encoder": name})
        print(f"wrote {name}", flush=True)
    float_fn = v1.encoder_function_from(v1.encoder_layers(ga, ha, log_gain, None), None, True, False)
    (out / contract.FLOAT_ENCODER).write_bytes(v1.convert_float(float_fn))
    (out / contract.DECODER).write_bytes(v1.convert_float(v1.decoder_from_steps(synthesis_steps(model),
                                                                                 cfg.latent)))
    hyper = v1.quantize_hyper_arrays(hyper_kernels(model), hyper_peaks(model, z_samples(model, crops)),
                                     cfg.latent, gains, True)
    hyper.update(v1.quantize_context_arrays(*context_arrays(model), cfg.latent, gains))
    hyper["mean_steps"] = np.array(contract.MEAN_STEPS, np.int32)
    np.savez(out / contract.HYPER, **hyper, gain=gains.astype(np.float32),
             inv_gain=np.exp(model.log_inv_gain.detach().numpy()))
    hyper_convs = []
    for i in range(sum(1 for k in hyper if k.startswith("w"))):
        hyper_convs.append(f"hyper_conv{i}.tflite")
        (out / hyper_convs[-1]).write_bytes(v1.exact_conv_model(hyper[f"w{i}"]))
    CdfTables.from_pmfs(*contract.latent_pmfs(contract.MEAN_STEPS)).save(out / contract.CDF_Y)
    CdfTables.from_pmfs(*bottleneck_tables(model)).save(out / contract.CDF_Z)
    manifest = {
        "format": contract.MANIFEST_FORMAT,
        "config": {**cfg.to_dict(), "version": 2, "hyper_from": "features", "mean": True, "context": True,
                   "fractional_mean": True},
        "training_step": int(meta.get("step", 0)),
        "qualities": qualities,
        "scale_table": {"min": contract.SCALE_MIN, "max": contract.SCALE_MAX, "levels": contract.SCALE_LEVELS},
        "hyper_convs": hyper_convs,
    }
    (out / contract.MANIFEST).write_text(json.dumps(manifest, indent=1))
    from edgecodec.models import ModelBundle
    manifest["model_id"] = ModelBundle.load(out, verify=False).compute_id().hex()
    (out / contract.MANIFEST).write_text(json.dumps(manifest, indent=1))
    print(f"model id {manifest['model_id']}", flush=True)
    if kodak:
        from edgecodec.evaluate import evaluate_folder
        manifest["kodak"] = evaluate_folder(kodak, model_dir=out)["per_quality"]
        (out / contract.MANIFEST).write_text(json.dumps(manifest, indent=1))
        for row in manifest["kodak"]:
            print(f"q{row['quality']}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB", flush=True)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="v2 weights .npz (tools/train_torch.py; its .json beside it)")
    ap.add_argument("--calib", nargs="+", required=True, help="training image folders for int8 calibration")
    ap.add_argument("-o", "--out", required=True, help="output model folder")
    ap.add_argument("--kodak", help="measure the exported folder on these images and record it in the manifest")
    args = ap.parse_args(argv)
    export(pathlib.Path(args.weights), args.calib, pathlib.Path(args.out), args.kodak)


if __name__ == "__main__":
    main()
