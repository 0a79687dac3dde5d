"""Export a trained checkpoint into the run-time model folder (``models/``).

    python -m tools.export runs/main/weights.npz --calib ../shared/data/train -o models [--kodak ../shared/data/kodak]

Writes, per the model contract in ``docs/models.md``:

* ``encoder_q{K}.tflite``: full-integer int8 encoders (uint8 RGB in, int8 latents y and hyper-latents z out),
  one per quality, with that quality's gain folded into the last analysis convolution. Both outputs are
  pinned to scale 1, zero point 0 by FakeQuant nodes, so the int8 output *is* the rounded latent.
  The first 5x5/2 convolution is written as space-to-depth + an equivalent 3x3 convolution (same sums,
  a third faster in TFLite's int8 kernels). Each ReLU output's int8 range is the one with the least
  quantization error on the calibration crops (``--act-ranges mse``), not their min/max: -0.2 % BD-rate
  on eight Kodak images at step 152 735, the same weights either way.
* ``encoder_float.tflite``: the float twin (ungained y, and z), used to measure what int8 costs.
* ``decoder.tflite``: float synthesis transform (latents in, RGB in [0, 255] out).
* ``hyper.npz``: the hyper-synthesis as int8 weights with integer requantization (run by
  ``edgecodec.models.hyper``), plus per-quality integer offsets that turn its output into CDF table indices;
  for a model with a checkerboard context, also its per-quality int8 taps (``ctx_*``, run by
  ``edgecodec.models.context``).
* ``cdf_y.npz`` / ``cdf_z.npz``: integer CDF tables for the C range coder.
* ``manifest.json``: model id (hash of the files above), qualities, lambdas, gains, training step, and the
  Kodak bpp/PSNR measured through the real codec when ``--kodak`` is given.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tools.codec_model import IGDN, SCALE_MIN, Config, KerasCodec  # noqa: E402
from tools.train import load_images, load_weights_npz  # noqa: E402
from tools.weights_math import space_to_depth_kernel  # noqa: E402

from edgecodec.entropy import CdfTables  # noqa: E402
from edgecodec.models import contract  # noqa: E402

SCALE_LEVELS = contract.SCALE_LEVELS
SCALE_MAX = contract.SCALE_MAX
HYPER_SHIFT = contract.HYPER_SHIFT


def conv_layers(seq):
    return [layer for layer in seq.layers if isinstance(layer, tf.keras.layers.Conv2D)]


def conv_apply(x, kernel, bias, stride):
    return tf.nn.conv2d(x, kernel, stride, "SAME") + bias


def calibration_crops(folders, n=24, size=256, seed=0):
    rng = np.random.default_rng(seed)
    images = load_images(folders, size)
    crops = []
    for i in range(n):
        im = images[rng.integers(len(images))]
        y = rng.integers(0, im.shape[0] - size + 1)
        x = rng.integers(0, im.shape[1] - size + 1)
        crops.append(im[y:y + size, x:x + size].astype(np.float32))
    crops[0][0, 0] = 0.0  # pin the input range to exactly [0, 255] so the uint8 input has scale 1
    crops[0][0, 1] = 255.0
    return crops


def _encoder_layers(model: KerasCodec, quality: int | None, space_to_depth: bool = True):
    """(hidden analysis layers, hyper-analysis layers, last conv, gained last conv, s2d first) as constants."""
    ga = [(l.kernel.numpy(), l.bias.numpy(), l.strides[0]) for l in conv_layers(model.g_a)]
    ha = [(l.kernel.numpy(), l.bias.numpy(), l.strides[0]) for l in conv_layers(model.h_a)]
    return encoder_layers(ga, ha, model.log_gain.numpy(), quality, space_to_depth)


def encoder_layers(ga, ha, log_gain, quality: int | None, space_to_depth: bool = True):
    """``_encoder_layers`` from plain (HWIO kernel, bias, stride) lists of the analysis (its last
    convolution last) and the hyper-analysis, and the per-quality log-gains (Q, M)."""
    ga, ha = list(ga), list(ha)
    ga[0] = (ga[0][0] / 255.0, ga[0][1], ga[0][2])
    s2d_first = space_to_depth and ga[0][0].shape[0] == 5 and ga[0][2] == 2
    if s2d_first:
        ga[0] = (space_to_depth_kernel(ga[0][0]), ga[0][1], 1)
    last = ga.pop()
    gained = last
    if quality is not None:
        gain = np.exp(log_gain[quality])
        gained = (last[0] * gain, last[1] * gain, last[2])

    def const(layers):
        return [(tf.constant(k, tf.float32), tf.constant(b, tf.float32), s) for k, b, s in layers]

    ga, ha, (last,), (gained,) = const(ga), const(ha), const([last]), const([gained])
    return ga, ha, last, gained, s2d_first


def _analyse(image, layers, quality, from_features, fq, hidden):
    """y and z of ``image`` (0..255); ``hidden(i, h)`` sees (and may replace) the i-th ReLU output."""
    ga, ha, last, gained, s2d_first = layers
    h = tf.nn.space_to_depth(image, 2) if s2d_first else image
    for i, (k, b, s) in enumerate(ga):
        h = hidden(i, tf.nn.relu(conv_apply(h, k, b, s)))
    y = fq(conv_apply(h, *gained))
    if not from_features:
        h = conv_apply(h, *last) if quality is not None else y
    for i, (k, b, s) in enumerate(ha):
        h = conv_apply(h, k, b, s)
        if i < len(ha) - 1:
            h = hidden(len(ga) + i, tf.nn.relu(h))
    return y, fq(h)


def activation_ranges(model: KerasCodec, crops, samples: int = 1 << 20, seed: int = 0) -> list[float]:
    """Per ReLU output of the encoder, the top of the int8 range that minimizes the quantization error on
    the calibration crops. Plain min/max calibration lets a few outliers in the ReLU outputs' long tails
    set the step for every value."""
    return activation_ranges_from(_encoder_layers(model, None), model.cfg.hyper_from == "features", crops,
                                  samples, seed)


def activation_ranges_from(layers, from_features: bool, crops, samples: int = 1 << 20, seed: int = 0):
    """``activation_ranges`` of the encoder ``encoder_layers`` describes."""
    values: dict[int, list[np.ndarray]] = {}

    def record(i, h):
        values.setdefault(i, []).append(h.numpy().ravel())
        return h

    for c in crops:
        _analyse(tf.constant(c[None]), layers, None, from_features, lambda t: t, record)
    return least_error_tops([np.concatenate(values[i]) for i in sorted(values)], samples, seed)


def least_error_tops(activations: list[np.ndarray], samples: int = 1 << 20, seed: int = 0) -> list[float]:
    """Per array of ReLU outputs, the top of the 8-bit range [0, top] with the least quantization error
    (on a random sample of ``samples`` values)."""
    rng = np.random.default_rng(seed)
    tops = []
    for x in activations:
        x = x[rng.integers(0, len(x), min(samples, len(x)))] if len(x) > samples else x
        peak = float(x.max())
        best, best_err = peak, np.inf
        for top in peak * np.linspace(0.1, 1.0, 91):
            step = top / 255.0
            err = float(np.mean((x - np.clip(np.round(x / step), 0, 255) * step) ** 2))
            if err < best_err:
                best, best_err = float(top), err
        tops.append(best)
    return tops


def encoder_function(model: KerasCodec, quality: int | None, fake_quant: bool, space_to_depth: bool = True,
                     act_tops: list[float] | None = None, size: tuple[int, int] | None = None):
    """Analysis + hyper-analysis on 0..255 RGB; with a quality, its gain is folded into the last conv.

    The gained latents are pinned to scale 1 (their int8 values are the symbols). The hyper-analysis
    reads the last hidden features (or, for models trained with ``hyper_from="y"``, an ungained copy of
    the last convolution: h_a fed with the rounded, gained latents would starve at low qualities).
    ``act_tops`` (from ``activation_ranges``) pins each ReLU output's int8 range to [0, top].
    """
    return encoder_function_from(_encoder_layers(model, quality, space_to_depth), quality,
                                 model.cfg.hyper_from == "features", fake_quant, act_tops, size)


def encoder_function_from(layers, quality: int | None, from_features: bool, fake_quant: bool,
                          act_tops: list[float] | None = None, size: tuple[int, int] | None = None):
    """``encoder_function`` of the encoder ``encoder_layers`` describes; ``size`` (height, width) fixes
    the input shape (accelerators such as the Edge TPU compile only static shapes)."""
    def fq(t):
        return tf.quantization.fake_quant_with_min_max_args(t, min=-128.0, max=127.0, num_bits=8) if fake_quant else t

    def hidden(i, h):
        if act_tops is None:
            return h
        return tf.quantization.fake_quant_with_min_max_args(h, min=0.0, max=act_tops[i], num_bits=8)

    height, width = size or (None, None)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="image")])
    def encode(image):
        y, z = _analyse(image, layers, quality, from_features, fq, hidden)
        return {"y": tf.identity(y, name="y"), "z": tf.identity(z, name="z")}

    return encode


def convert_int8(fn, crops):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)

    def rep():
        for c in crops:
            yield [c[None]]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.int8
    return conv.convert()


def convert_float(fn):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


def synthesis_steps(g_s) -> list[tuple]:
    """A Keras synthesis as ``decoder_from_steps`` steps."""
    steps = []
    for layer in g_s.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            steps.append(("conv", layer.kernel.numpy(), layer.bias.numpy()))
        elif isinstance(layer, IGDN):
            steps.append(("igdn", np.square(layer.gamma_p.numpy()), np.square(layer.beta_p.numpy()) + 1e-6))
        else:
            steps.append(("d2s",))
    return steps


def decoder_function(g_s, latent: int):
    return decoder_from_steps(synthesis_steps(g_s), latent)


def decoder_from_steps(steps: list[tuple], latent: int):
    """The float synthesis from plain steps: ("conv", HWIO kernel, bias), ("d2s",), ("igdn", gamma (C_in,
    C_out), beta) and ("res", kernel1, bias1, kernel2, bias2) for x + conv2(relu(conv1(x))). IGDN is written
    as a 1x1 convolution, which TFLite runs far faster than a tensordot."""
    const = [tuple(tf.constant(np.asarray(a, np.float32)) for a in step[1:]) for step in steps]

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, latent], tf.float32, name="latent")])
    def decode(y_hat):
        x = y_hat
        for (kind, *_), args in zip(steps, const):
            if kind == "conv":
                x = conv_apply(x, args[0], args[1], 1)
            elif kind == "igdn":
                x = x * tf.sqrt(tf.nn.conv2d(tf.square(x), args[0][None, None], 1, "SAME") + args[1])
            elif kind == "res":
                x = x + conv_apply(tf.nn.relu(conv_apply(x, args[0], args[1], 1)), args[2], args[3], 1)
            else:
                x = tf.nn.depth_to_space(x, 2)
        return {"image": tf.clip_by_value(x, 0.0, 1.0) * 255.0}

    return decode


def quantize_hyper(model: KerasCodec, z_samples: list[np.ndarray]):
    """Turn h_s (and the mean head, if any) into int8 weights with integer requantization, calibrated on
    real hyper-latents. The mean head is appended to the last layer's output channels; ``mean_mult`` turns
    its accumulator straight into the integer mean of the gained latent, per quality."""
    layers = conv_layers(model.h_s)
    acts = []
    for z in z_samples:
        h = tf.constant(np.clip(z, -127, 127)[None].astype(np.float32))
        per = []
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                h = tf.nn.relu(tf.nn.depth_to_space(h, 2))
                per.append(h.numpy())
        acts.append(per)
    kernels = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in layers]
    if model.cfg.mean:
        k, b = kernels[-1]
        kernels[-1] = (np.concatenate([k, model.h_mean.kernel.numpy()], axis=3),
                       np.concatenate([b, model.h_mean.bias.numpy()]))
    peaks = [np.percentile(np.concatenate([a[i].ravel() for a in acts]), 99.999) for i in range(len(layers) - 1)]
    return quantize_hyper_arrays(kernels, peaks, model.cfg.latent, np.exp(model.log_gain.numpy().astype(np.float64)),
                                 model.cfg.mean)


def quantize_hyper_arrays(kernels, peaks, latent: int, gains: np.ndarray, mean: bool) -> dict:
    """``quantize_hyper`` from plain arrays: the layers' (HWIO kernel, bias), the last one's outputs being
    the latents' log-scales then (with ``mean``) their means; each hidden layer's activation peak (its
    int8 range); the per-quality gains (Q, M)."""
    out = {}
    s_in = 1.0
    for i, (w, b) in enumerate(kernels):
        w = w.astype(np.float64)
        b = b.astype(np.float64)
        s_w = np.maximum(np.abs(w).max(axis=(0, 1, 2)), 1e-8) / 127.0
        w_q = np.clip(np.round(w / s_w), -127, 127).astype(np.int8)
        b_q = np.round(b / (s_in * s_w)).astype(np.int64)
        out[f"w{i}"] = w_q
        out[f"b{i}"] = b_q
        if i < len(kernels) - 1:
            s_out = max(float(peaks[i]), 1e-6) / 127.0
            mult = s_in * s_w / s_out
        else:
            s_out = None
            mult = s_in * s_w[:latent] / contract.log_scale_step()
            if mean:
                out["mean_mult"] = np.round(s_in * s_w[latent:] * gains * 2.0 ** HYPER_SHIFT).astype(np.int64)
        out[f"m{i}"] = np.round(mult * 2.0 ** HYPER_SHIFT).astype(np.int64)
        s_in = s_out
    offsets = (np.log(gains) - math.log(SCALE_MIN)) / contract.log_scale_step()
    out["index_offset"] = np.round(offsets * 2.0 ** HYPER_SHIFT).astype(np.int64)
    return out


def quantize_context(model: KerasCodec):
    """The checkerboard context as per-quality int8 taps acting on gained integer latents (the inverse
    gain of each input channel folded in), with multipliers and offsets into the fixed-point units of the
    hyper-synthesis' last layer: 2^24 per table-index step for the first half, 2^24 per unit of the gained
    mean for the second (``edgecodec.models.context``)."""
    return quantize_context_arrays(model.ctx.taps.numpy(), model.ctx.bias.numpy(), model.cfg.latent,
                                   np.exp(model.log_gain.numpy().astype(np.float64)))


def quantize_context_arrays(taps: np.ndarray, bias: np.ndarray, latent: int, gains: np.ndarray) -> dict:
    """``quantize_context`` from plain arrays: taps (4, M, 2M) in ``context.TAPS`` order, bias (2M), gains (Q, M)."""
    taps = taps.astype(np.float64)
    bias = bias.astype(np.float64)
    one = 2.0 ** HYPER_SHIFT
    weights, mults, offsets = [], [], []
    for gain in gains:
        w = taps / gain[None, :, None]
        s_w = np.maximum(np.abs(w).max(axis=(0, 1)), 1e-12) / 127.0
        weights.append(np.clip(np.round(w / s_w), -127, 127).astype(np.int8))
        to_fixed = np.concatenate([np.full(latent, one / contract.log_scale_step()), one * gain])
        mults.append(np.round(s_w * to_fixed).astype(np.int64))
        offsets.append(np.round(bias * to_fixed).astype(np.int64))
    return {"ctx_w": np.stack(weights), "ctx_mult": np.stack(mults), "ctx_offset": np.stack(offsets)}


def exact_conv_model(w_int8: np.ndarray) -> bytes:
    """A float TFLite 3x3 convolution whose weights are the int8 values: exact on integer inputs (docs/models.md)."""
    kernel = tf.constant(w_int8.astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, w_int8.shape[2]], tf.float32, name="activations")])
    def conv(a):
        return {"acc": tf.nn.conv2d(a, kernel, 1, "SAME")}

    return convert_float(conv)


def logistic_tables(loc, log_scale):
    pmfs, offsets, lengths = [], [], []
    scale = np.exp(log_scale.astype(np.float64))
    lo = np.floor(loc - contract.TAIL_SIGMAS * 2 * scale).astype(int) - 1
    hi = np.ceil(loc + contract.TAIL_SIGMAS * 2 * scale).astype(int) + 1
    lo, hi = np.maximum(lo, -128), np.minimum(hi, 127)
    width = int((hi - lo).max()) + 1
    for c in range(len(loc)):
        v = np.arange(lo[c], hi[c] + 1, dtype=np.float64)
        cdf = lambda t: 1.0 / (1.0 + np.exp(-(t - loc[c]) / scale[c]))  # noqa: E731
        row = np.zeros(width)
        row[:len(v)] = cdf(v + 0.5) - cdf(v - 0.5)
        pmfs.append(row)
        offsets.append(lo[c])
        lengths.append(len(v))
    return np.array(pmfs), np.array(offsets, np.int32), np.array(lengths, np.int32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="weights.npz written by tools/train.py (its .json beside it gives the step)")
    ap.add_argument("--calib", nargs="+", required=True, help="training image folders for int8 calibration")
    ap.add_argument("-o", "--out", default="models", help="output folder")
    ap.add_argument("--kodak", help="evaluate the exported models on this folder and record it in the manifest")
    ap.add_argument("--act-ranges", choices=("mse", "minmax"), default="mse",
                    help="int8 activation ranges: least quantization error (default) or the calibration min/max")
    args = ap.parse_args(argv)

    weights = pathlib.Path(args.weights)
    meta = json.loads(weights.with_suffix(".json").read_text())
    cfg = Config.from_dict(meta["config"])
    model = KerasCodec(cfg)
    model.build_all()
    load_weights_npz(model, weights)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    crops = calibration_crops(args.calib)
    act_tops = activation_ranges(model, crops) if args.act_ranges == "mse" else None
    files = {}
    for q in range(len(cfg.lambdas)):
        name = f"encoder_q{q}.tflite"
        (out / name).write_bytes(convert_int8(encoder_function(model, q, True, act_tops=act_tops), crops))
        files[name] = "int8 encoder"
        print(f"wrote {name}", flush=True)
    (out / "encoder_float.tflite").write_bytes(convert_float(encoder_function(model, None, False)))
    (out / "decoder.tflite").write_bytes(convert_float(decoder_function(model.g_s, cfg.latent)))

    z_samples = []
    for c in crops:
        y, features = model.analyse(tf.constant(c[None] / 255.0))
        z_samples.append(model.h_a(features if cfg.hyper_from == "features" else y).numpy()[0])
    hyper = quantize_hyper(model, [np.round(z) for z in z_samples])
    if cfg.context:
        hyper.update(quantize_context(model))
    mean_steps = contract.MEAN_STEPS if cfg.mean else 0
    if mean_steps:
        hyper["mean_steps"] = np.array(mean_steps, np.int32)
    np.savez(out / "hyper.npz", **hyper,
             gain=np.exp(model.log_gain.numpy()), inv_gain=np.exp(model.log_inv_gain.numpy()))
    hyper_convs = []
    for i in range(sum(1 for k in hyper if k.startswith("w"))):
        hyper_convs.append(f"hyper_conv{i}.tflite")
        (out / hyper_convs[-1]).write_bytes(exact_conv_model(hyper[f"w{i}"]))
    CdfTables.from_pmfs(*contract.latent_pmfs(mean_steps)).save(out / "cdf_y.npz")
    CdfTables.from_pmfs(*logistic_tables(model.z_loc.numpy(), model.z_log_scale.numpy())).save(out / "cdf_z.npz")

    manifest = {
        "format": contract.MANIFEST_FORMAT,
        "config": cfg.to_dict(),
        "training_step": int(meta.get("step", 0)),
        "qualities": [
            {"quality": q, "lambda": lam, "encoder": f"encoder_q{q}.tflite"}
            for q, lam in enumerate(cfg.lambdas)
        ],
        "scale_table": {"min": SCALE_MIN, "max": SCALE_MAX, "levels": SCALE_LEVELS},
        "hyper_convs": hyper_convs,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    from edgecodec.models import ModelBundle
    bundle = ModelBundle.load(out, verify=False)
    manifest["model_id"] = bundle.compute_id().hex()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"model id {manifest['model_id']}", flush=True)

    if args.kodak:
        from edgecodec.evaluate import evaluate_folder
        report = evaluate_folder(args.kodak, model_dir=out)
        manifest["kodak"] = report["per_quality"]
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        for row in report["per_quality"]:
            print(f"q{row['quality']}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
