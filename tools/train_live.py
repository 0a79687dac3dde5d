"""Train a faster synthesis for the live view, on the latents of a trained codec; resumable.

    nice -n 10 python -m tools.train_live ../shared/data/train --init models/checkpoint/weights.npz

The codec's encoder, hyperprior and gains stay frozen, so a bitstream decodes with either synthesis:
the live one only trades some PSNR for speed where someone watches frames as they arrive. Its widths
(default 32,16,8 against 64,64,32) give 0.43 instead of 2.9 GMAC per 640x480 frame. It starts from the
full synthesis (or ``--prune-from`` a wider live one) with the least used channels removed, and then
learns the codec's distortion term (lambda-weighted MSE; the rate is fixed by the frozen encoder).

Every ``--save-every`` seconds it writes ``RUN/live.npz`` (the weights ``tools/export_live.py`` turns into
``decoder_live.tflite``) and ``RUN/live.json`` (step, widths and the codec checkpoint it belongs to). On
a machine without the run folder, ``--prune-from models/checkpoint/live.npz`` (same widths) continues the
committed weights.
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

from tools.codec_model import IGDN, LATENT_CLIP, Config, KerasCodec, synthesis  # noqa: E402
from tools.train import (add_part_options, assign_positions, batches, continue_or_start, load_images,  # noqa: E402
                   load_weights_npz, parse_with_loop_options, position_arrays, run_steps, save_part)


def latents(model: KerasCodec, x, quality):
    """The decoder's input for images x at the given qualities: round(y * gain) / gain, as at run time."""
    gain = tf.exp(tf.gather(model.log_gain, quality))[:, None, None, :]
    inv_gain = tf.exp(tf.gather(model.log_inv_gain, quality))[:, None, None, :]
    y, _ = model.analyse(x)
    return tf.stop_gradient(tf.clip_by_value(tf.round(y * gain), -LATENT_CLIP, LATENT_CLIP) * inv_gain)


def stages(seq):
    """(conv, igdn or None) pairs of a synthesis Sequential."""
    convs = [layer for layer in seq.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    igdns = [layer for layer in seq.layers if isinstance(layer, IGDN)]
    return list(zip(convs, igdns + [None]))


def channel_usage(full, y_hat) -> list[np.ndarray]:
    """Per hidden stage, how much each channel feeds the next convolution: the mean magnitude of the
    IGDN's output times the norm of the next kernel's weights on that channel."""
    usage, x = [], y_hat
    pairs = stages(full)
    for i, (conv, igdn) in enumerate(pairs):
        x = igdn(tf.nn.depth_to_space(conv(x), 2)) if igdn is not None else None
        if igdn is None:
            break
        nxt = pairs[i + 1][0].kernel.numpy()
        weight = np.sqrt(np.square(nxt).sum(axis=(0, 1, 3)))
        usage.append(np.mean(np.abs(x.numpy()), axis=(0, 1, 2)) * weight)
    return usage


def prune_into(live, full, usage) -> None:
    """Copy the full synthesis into the narrower one, keeping each stage's most used channels.

    depth_to_space reads input channel k * C + c for sub-pixel k of output channel c, so keeping
    channel c keeps the four kernel columns k * C + c."""
    keep_in = None
    full_pairs, live_pairs = stages(full), stages(live)
    for i, ((fc, fg), (lc, lg)) in enumerate(zip(full_pairs, live_pairs)):
        kernel, bias = fc.kernel.numpy(), fc.bias.numpy()
        if keep_in is not None:
            kernel = kernel[:, :, keep_in]
        if fg is not None:
            width = fc.filters // 4
            keep = np.sort(np.argsort(-usage[i])[:lc.filters // 4])
            cols = np.concatenate([k * width + keep for k in range(4)])
            kernel, bias = kernel[..., cols], bias[cols]
            lg.gamma_p.assign(fg.gamma_p.numpy()[np.ix_(keep, keep)])
            lg.beta_p.assign(fg.beta_p.numpy()[keep])
            keep_in = keep
        lc.kernel.assign(kernel)
        lc.bias.assign(bias)


def weight_arrays(seq) -> dict:
    return position_arrays(seq.layers)


def assign_weights(seq, arrays: dict) -> None:
    assign_positions(seq.layers, arrays, "live")


def build_live(cfg: Config, widths):
    live = synthesis(dataclasses.replace(cfg, n_dec=tuple(widths)))
    live.build((None, None, None, cfg.latent))
    return live


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_part_options(ap, "live", "32,16,8", "channels of the three hidden stages", batch=8, lr=1e-3)
    args = parse_with_loop_options(ap, argv)
    init = pathlib.Path(args.init)
    base = json.loads(init.with_suffix(".json").read_text())
    cfg = Config.from_dict(base["config"])
    widths = tuple(int(w) for w in args.widths.split(","))
    if len(widths) != 3 or min(widths) < 1:
        raise SystemExit("train_live: --widths takes three positive channel counts, e.g. 48,24,12")
    model = KerasCodec(cfg)
    model.build_all()
    load_weights_npz(model, init, strict=True)
    live = build_live(cfg, widths)

    run = pathlib.Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    opt = tf.keras.optimizers.Adam(learning_rate=args.lr)
    step = tf.Variable(0, dtype=tf.int64, name="step")
    ckpt = tf.train.Checkpoint(live=live, optimizer=opt, step=step)
    manager = tf.train.CheckpointManager(ckpt, run / "ckpt", max_to_keep=2)
    images = load_images(args.data, args.crop)
    rng = np.random.default_rng(int(time.time()))
    gen = batches(images, args.batch, args.crop, rng, args.scale_min)
    n_q = len(cfg.lambdas)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        print(f"resumed {manager.latest_checkpoint} at step {int(step)}", flush=True)
    else:
        x = tf.cast(np.concatenate([next(gen) for _ in range(4)]), tf.float32) / 255.0
        q = tf.constant(np.arange(len(x)) % n_q, tf.int32)
        source, label = model.g_s, f"the full synthesis {cfg.n_dec}"
        if args.prune_from:
            meta = json.loads(pathlib.Path(args.prune_from).with_suffix(".json").read_text())
            if meta.get("codec_step") != base.get("step"):
                raise SystemExit(f"train_live: {args.prune_from} belongs to codec step {meta.get('codec_step')}")
            source, label = build_live(cfg, meta["widths"]), f"{args.prune_from} {tuple(meta['widths'])}"
            with np.load(args.prune_from) as data:
                assign_weights(source, {k: data[k] for k in data.files})
        prune_into(live, source, channel_usage(source, latents(model, x, q)))
        continue_or_start(step, meta if args.prune_from else None, widths, args.prune_from, label)
    opt.learning_rate.assign(args.lr)
    lambdas = tf.constant(cfg.lambdas, tf.float32)

    @tf.function
    def train_step(x_u8, quality):
        x = tf.cast(x_u8, tf.float32) / 255.0
        y_hat = latents(model, x, quality)
        with tf.GradientTape() as tape:
            mse = tf.reduce_mean(tf.square(x - live(y_hat)), axis=[1, 2, 3])
            loss = tf.reduce_mean(tf.gather(lambdas, quality) * 255.0 ** 2 * mse)
        grads = tape.gradient(loss, live.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 5.0)
        opt.apply_gradients(zip(grads, live.trainable_variables))
        return mse

    def save():
        save_part(manager, step, run, "live", weight_arrays(live), widths, base, init)

    def train_one():
        quality = rng.integers(0, n_q, args.batch).astype(np.int32)
        return list(zip(quality, train_step(next(gen), quality).numpy()))

    def summary(records):
        return " ".join(f"q{q}:{10 * np.log10(1 / max(np.mean(v), 1e-10)):.2f}dB"
                        for q in range(n_q) if (v := [m for rq, m in records if rq == q]))

    run_steps(args, run, step, train_one, summary, save)


if __name__ == "__main__":
    main()
