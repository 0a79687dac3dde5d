"""Train the edgecodec model on a folder of images; resumable, meant to run for hours in the background.

    nice -n 10 python -m tools.train ../shared/data/train --run runs/main

Every ``--save-every`` seconds it writes a full checkpoint (weights + optimizer) under ``RUN/ckpt`` and a
weights-only ``RUN/weights.npz`` (the file that is committed as ``models/checkpoint/weights.npz``). It
resumes from the full checkpoint when present, else from ``--init`` weights, so stopping loses at most
one save interval. Needs the ``train-tf`` extra (TensorFlow).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tools.codec_model import Config, KerasCodec  # noqa: E402
from tools.train_data import IMAGE_SUFFIXES, batches, load_images, rd_summary  # noqa: E402,F401  (re-exported)
from tools.weights_math import per_quality_rows  # noqa: E402

def save_weights_npz(model, path):
    arrays = {v.path: v.numpy() for v in model.weights}
    tmp = str(path) + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_weights_npz(model, path, strict=True):
    """Assign weights by name; with strict=False, weights missing or of another shape keep their init,
    except per-quality gains, which follow the lambdas when the checkpoint's json names its own."""
    data = np.load(path)
    meta = pathlib.Path(path).with_suffix(".json")
    old_lambdas = json.loads(meta.read_text())["config"]["lambdas"] if meta.exists() else None
    skipped = [v.path for v in model.weights if v.path not in data or data[v.path].shape != tuple(v.shape)]
    if skipped and strict:
        raise SystemExit(f"train: {path} lacks or mis-shapes weights {skipped[:3]}...")
    for v in model.weights:
        if v.path not in skipped:
            v.assign(data[v.path])
        elif v.path.endswith("gain") and v.path in data and old_lambdas and not strict:
            v.assign(per_quality_rows(data[v.path], old_lambdas, model.cfg.lambdas))
            skipped.remove(v.path)
            print(f"train: {v.path} mapped from lambdas {old_lambdas}", flush=True)
    if skipped:
        print(f"train: kept the initial values of {skipped}", flush=True)


def position_arrays(layers) -> dict:
    """Weights of a list of layers keyed by position (``2/kernel``), independent of Keras' layer names."""
    return {f"{i}/{w.name}": w.numpy() for i, layer in enumerate(layers) for w in layer.weights}


def assign_positions(layers, arrays: dict, what: str) -> None:
    """The inverse of ``position_arrays``; a missing or mis-shaped weight stops the script."""
    for i, layer in enumerate(layers):
        for w in layer.weights:
            key = f"{i}/{w.name}"
            if key not in arrays or arrays[key].shape != tuple(w.shape):
                raise SystemExit(f"{what} weights lack {key} of shape {tuple(w.shape)}")
            w.assign(arrays[key])


def rd_loss(model, x_u8, quality, lambdas):
    """(loss, bpp, mse): the batch's mean rate + lambda * 255^2 * MSE, and per image its bits per pixel
    (from the noisy latents' likelihoods) and its MSE on [0, 1] pixels."""
    x = tf.cast(x_u8, tf.float32) / 255.0
    x_hat, bits_y, bits_z = model(x, quality, training=True)
    pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
    mse = tf.reduce_mean(tf.square(x - x_hat), axis=[1, 2, 3])
    bpp = (bits_y + bits_z) / pixels
    loss = tf.reduce_mean(bpp + tf.gather(lambdas, quality) * 255.0 ** 2 * mse)
    return loss, bpp, mse


def add_part_options(ap: argparse.ArgumentParser, part: str, widths: str, widths_help: str, batch: int,
                     lr: float) -> None:
    """The options of the scripts that train one part of a trained codec against the rest of it, frozen
    (``train_live.py``, ``train_fast.py``): data, the codec's weights, run folder, the part's widths, the
    committed part to continue from, batch, crop, scale and learning rate."""
    ap.add_argument("data", nargs="+", help="folders of training images (searched recursively)")
    ap.add_argument("--init", default="models/checkpoint/weights.npz",
                    help="the trained codec's weights (its .json beside it gives the config)")
    ap.add_argument("--run", default=f"runs/{part}", help="run folder for checkpoints and logs")
    ap.add_argument("--widths", default=widths, help=widths_help)
    ap.add_argument("--prune-from", metavar=f"{part.upper()}.npz",
                    help=f"start from this {part} part (its .json gives its widths) instead of the codec's own")
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--scale-min", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=lr)


def save_part(manager, step, run: pathlib.Path, part: str, arrays: dict, widths, codec_meta: dict, init) -> None:
    """A part's full checkpoint, then its weights-only ``RUN/<part>.npz`` (replaced atomically) and
    ``RUN/<part>.json``: step, widths and the codec checkpoint it belongs to."""
    manager.save(checkpoint_number=int(step))
    np.savez(run / f"{part}.tmp.npz", **arrays)
    os.replace(run / f"{part}.tmp.npz", run / f"{part}.npz")
    (run / f"{part}.json").write_text(json.dumps({"step": int(step), "widths": list(widths),
                                                  "codec_step": codec_meta.get("step"), "codec": str(init)}))


def continue_or_start(step, meta, widths, prune_from, label: str) -> None:
    """After pruning: a committed part of the same widths was copied whole, so its run continues at its
    step; anything narrower starts a new run."""
    if meta and tuple(meta["widths"]) == tuple(widths):
        step.assign(meta["step"])
        print(f"continuing {prune_from} at step {int(step)}", flush=True)
    else:
        print(f"pruned {label} to {tuple(widths)}", flush=True)


def parse_with_loop_options(ap: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Add the options ``run_steps`` reads (and TensorFlow's thread count, which it sets), then parse."""
    ap.add_argument("--steps", type=int, default=10**9, help="stop after this many total steps")
    ap.add_argument("--hours", type=float, default=1e9, help="stop after this much wall time")
    ap.add_argument("--save-every", type=float, default=300, help="seconds between checkpoints")
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return args


def run_steps(args, run, step, train_one, summary, save) -> None:
    """The loop both training scripts share: ``train_one()`` until SIGTERM/SIGINT, ``--steps`` or
    ``--hours``; every ``--log-every`` steps one line, printed and appended to RUN/train.log, from
    ``summary(records)`` over the per-image records ``train_one`` returned; ``save()`` every
    ``--save-every`` seconds and at the end."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    t_start = t_save = t_log = time.time()
    records: list = []
    with open(run / "train.log", "a") as log:
        while not stop["now"] and int(step) < args.steps and time.time() - t_start < args.hours * 3600:
            records.extend(train_one())
            step.assign_add(1)
            if int(step) % args.log_every == 0:
                now = time.time()
                line = f"step {int(step)} {args.log_every / (now - t_log):.2f} it/s {summary(records)}"
                print(line, flush=True)
                log.write(line + "\n")
                log.flush()
                records, t_log = [], now
            if time.time() - t_save > args.save_every:
                save()
                t_save = time.time()
    save()
    print(f"saved at step {int(step)}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="folders of training images (searched recursively)")
    ap.add_argument("--run", default="runs/main", help="run folder for checkpoints and logs")
    ap.add_argument("--init", help="weights.npz to start from when the run has no checkpoint")
    ap.add_argument("--batch", type=int, default=2, help="crops per step (default 2)")
    ap.add_argument("--crop", type=int, default=384,
                    help="crop side (default 384: z, at 1/64, is then 6x6, where 128 gave 2x2, so the "
                         "hyper-synthesis and the context learn from interiors, not only borders)")
    ap.add_argument("--scale-min", type=float, default=0.5,
                    help="shrink crops by a random factor in [SCALE_MIN, 1] first (default 0.5; 1: never)")
    ap.add_argument("--lr", type=float, default=5e-4)
    args = parse_with_loop_options(ap, argv)
    run = pathlib.Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    cfg_path = run / "config.json"
    cfg = Config.from_dict(json.loads(cfg_path.read_text())) if cfg_path.exists() else Config()
    cfg_path.write_text(json.dumps(cfg.to_dict(), indent=1))

    model = KerasCodec(cfg)
    model.build_all()
    opt = tf.keras.optimizers.Adam(learning_rate=args.lr)
    step = tf.Variable(0, dtype=tf.int64, name="step")
    ckpt = tf.train.Checkpoint(model=model, optimizer=opt, step=step)
    manager = tf.train.CheckpointManager(ckpt, run / "ckpt", max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        print(f"resumed {manager.latest_checkpoint} at step {int(step)}", flush=True)
    elif args.init:
        load_weights_npz(model, args.init, strict=False)
        meta = pathlib.Path(args.init).with_suffix(".json")
        if meta.exists():
            step.assign(json.loads(meta.read_text()).get("step", 0))
        print(f"initialised from {args.init} at step {int(step)}", flush=True)
    opt.learning_rate.assign(args.lr)

    lambdas = tf.constant(cfg.lambdas, tf.float32)
    n_q = len(cfg.lambdas)

    @tf.function
    def train_step(x_u8, quality):
        with tf.GradientTape() as tape:
            loss, bpp, mse = rd_loss(model, x_u8, quality, lambdas)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 5.0)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, bpp, mse

    images = load_images(args.data, args.crop)
    print(f"{len(images)} training images, config {cfg.to_dict()}", flush=True)
    rng = np.random.default_rng(int(time.time()))
    gen = batches(images, args.batch, args.crop, rng, args.scale_min)

    def save():
        manager.save(checkpoint_number=int(step))
        save_weights_npz(model, run / "weights.npz")
        (run / "weights.json").write_text(json.dumps({"step": int(step), "config": cfg.to_dict()}))

    last = {}

    def train_one():
        quality = rng.integers(0, n_q, args.batch).astype(np.int32)
        loss, bpp, mse = train_step(next(gen), quality)
        last["loss"] = float(loss)
        return list(zip(quality, bpp.numpy(), mse.numpy()))

    def summary(records):
        return f"loss {last['loss']:.4f} " + rd_summary(records, n_q)

    run_steps(args, run, step, train_one, summary, save)


if __name__ == "__main__":
    main()
