"""Train a faster analysis transform for the edge, against a trained codec's frozen decoder; resumable.

    nice -n 10 python -m tools.train_fast ../shared/data/train --init models/checkpoint/weights.npz

Everything the decoder reads stays frozen: gains, hyper-synthesis, context, entropy models and synthesis.
Only the analysis (narrower hidden widths, default 16,24 against 48,48) and the hyper-analysis learn, on
the codec's own rate-distortion loss, so what the fast encoder writes is an ordinary stream of the same
model: any decoder of the folder reads it, and the model id does not change. At 640x480 the default
widths take the analysis' layers from 0.90 to 0.31 GMAC per frame (24,32: 0.45). It starts from the
codec's analysis with the least used channels removed (``--prune-from`` continues a committed fast
encoder instead, or prunes it further to narrower widths).

Every ``--save-every`` seconds it writes ``RUN/fast.npz`` (the weights ``tools/export_fast.py`` turns into
``encoder_fast*.tflite``) and ``RUN/fast.json`` (step, widths and the codec checkpoint it belongs to).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tools.codec_model import Config, KerasCodec  # noqa: E402
from tools.train import (add_part_options, assign_positions, batches, continue_or_start, load_images,  # noqa: E402
                   load_weights_npz, parse_with_loop_options, position_arrays, rd_loss, rd_summary,
                   run_steps, save_part)


def encoder_convs(model: KerasCodec) -> list:
    """The analysis' convolutions, then the hyper-analysis': every layer the fast encoder replaces."""
    return [layer for seq in (model.g_a, model.h_a) for layer in seq.layers
            if isinstance(layer, tf.keras.layers.Conv2D)]


def channel_usage(model: KerasCodec, x) -> list[np.ndarray]:
    """Per hidden analysis layer whose width shrinks, how much each output channel feeds the next
    convolution: the mean ReLU output times the norm of the next kernel's weights on that channel."""
    convs = [layer for layer in model.g_a.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    usage, h = [], x
    for conv, nxt in zip(convs[:-2], convs[1:-1]):
        h = tf.nn.relu(conv(h))
        weight = np.sqrt(np.square(nxt.kernel.numpy()).sum(axis=(0, 1, 3)))
        usage.append(np.mean(h.numpy(), axis=(0, 1, 2)) * weight)
    return usage


def prune_into(fast: KerasCodec, source: list, usage) -> None:
    """Copy the source encoder ((kernel, bias) per layer of ``encoder_convs``) into ``fast``'s narrower
    one, keeping each narrowed layer's most used output channels (and the next layer's matching inputs)."""
    keep_in = None
    for i, (fc, (kernel, bias)) in enumerate(zip(encoder_convs(fast), source)):
        if keep_in is not None:
            kernel = kernel[:, :, keep_in]
            keep_in = None
        if i < len(usage) and fc.filters < kernel.shape[-1]:
            keep_in = np.sort(np.argsort(-usage[i])[:fc.filters])
            kernel, bias = kernel[..., keep_in], bias[keep_in]
        fc.kernel.assign(kernel)
        fc.bias.assign(bias)


def weight_arrays(model: KerasCodec) -> dict:
    return position_arrays(encoder_convs(model))


def assign_weights(model: KerasCodec, arrays: dict) -> None:
    assign_positions(encoder_convs(model), arrays, "fast encoder")


def build_fast(cfg: Config, widths, codec_weights) -> KerasCodec:
    """The codec with a narrower analysis (hidden widths ``widths``, the last one kept, since the
    hyper-analysis reads it) and every other weight from ``codec_weights``."""
    n_enc = tuple(widths) + (cfg.n_enc[-1],)
    model = KerasCodec(dataclasses.replace(cfg, n_enc=n_enc))
    model.build_all()
    with np.load(codec_weights) as data:
        for v in model.weights:
            if "/g_a/" not in v.path and "/h_a/" not in v.path:
                v.assign(data[v.path])
    return model


def starting_point(cfg: Config, init, base: dict, prune_from, x_u8):
    """(encoder arrays per layer, channel usage on ``x_u8``, label, fast meta or None) of the encoder a
    new run prunes: the codec's own, or the fast one in ``prune_from``."""
    meta = None
    if prune_from:
        meta = json.loads(pathlib.Path(prune_from).with_suffix(".json").read_text())
        if meta.get("codec_step") != base.get("step"):
            raise SystemExit(f"train_fast: {prune_from} belongs to codec step {meta.get('codec_step')}")
        source = build_fast(cfg, meta["widths"], init)
        with np.load(prune_from) as data:
            assign_weights(source, {k: data[k] for k in data.files})
        label = f"{prune_from} {tuple(meta['widths'])}"
    else:
        source = KerasCodec(cfg)
        source.build_all()
        load_weights_npz(source, init, strict=True)
        label = f"the codec's analysis {cfg.n_enc[:-1]}"
    usage = channel_usage(source, tf.cast(x_u8, tf.float32) / 255.0)
    arrays = [(c.kernel.numpy(), c.bias.numpy()) for c in encoder_convs(source)]
    return arrays, usage, label, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_part_options(ap, "fast", "16,24", "channels of the first two analysis layers", batch=4, lr=3e-4)
    args = parse_with_loop_options(ap, argv)
    init = pathlib.Path(args.init)
    base = json.loads(init.with_suffix(".json").read_text())
    cfg = Config.from_dict(base["config"])
    widths = tuple(int(w) for w in args.widths.split(","))
    if len(widths) != len(cfg.n_enc) - 1 or min(widths) < 1:
        raise SystemExit(f"train_fast: --widths takes {len(cfg.n_enc) - 1} positive channel counts, e.g. 16,24")
    run = pathlib.Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    images = load_images(args.data, args.crop)
    rng = np.random.default_rng(int(time.time()))
    gen = batches(images, args.batch, args.crop, rng, args.scale_min)
    n_q = len(cfg.lambdas)
    start = None
    if not (run / "ckpt" / "checkpoint").exists():
        start = starting_point(cfg, init, base, args.prune_from, next(gen))
    tf.keras.backend.clear_session()  # the fast codec's weights get the names the codec's file uses
    model = build_fast(cfg, widths, init)
    opt = tf.keras.optimizers.Adam(learning_rate=args.lr)
    step = tf.Variable(0, dtype=tf.int64, name="step")
    ckpt = tf.train.Checkpoint(g_a=model.g_a, h_a=model.h_a, optimizer=opt, step=step)
    manager = tf.train.CheckpointManager(ckpt, run / "ckpt", max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        print(f"resumed {manager.latest_checkpoint} at step {int(step)}", flush=True)
    else:
        source, usage, label, meta = start
        prune_into(model, source, usage)
        continue_or_start(step, meta, widths, args.prune_from, label)
    opt.learning_rate.assign(args.lr)
    lambdas = tf.constant(cfg.lambdas, tf.float32)
    trainable = model.g_a.trainable_variables + model.h_a.trainable_variables

    @tf.function
    def train_step(x_u8, quality):
        with tf.GradientTape() as tape:
            loss, bpp, mse = rd_loss(model, x_u8, quality, lambdas)
        grads = tape.gradient(loss, trainable)
        grads, _ = tf.clip_by_global_norm(grads, 5.0)
        opt.apply_gradients(zip(grads, trainable))
        return bpp, mse

    def save():
        save_part(manager, step, run, "fast", weight_arrays(model), widths, base, init)

    def train_one():
        quality = rng.integers(0, n_q, args.batch).astype(np.int32)
        bpp, mse = train_step(next(gen), quality)
        return list(zip(quality, bpp.numpy(), mse.numpy()))

    run_steps(args, run, step, train_one, lambda records: rd_summary(records, n_q), save)


if __name__ == "__main__":
    main()
