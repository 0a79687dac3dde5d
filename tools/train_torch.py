"""Train model v2 (PyTorch) on CPU or CUDA; resumable, meant to run for hours in the background.

    nice -n 10 python -m tools.train_torch ../shared/data/train --run runs/v2
    python -m tools.train_torch --pack .gpu/pack.npz --run runs/gpu --minutes 9   # on a GPU machine

Resumes from ``RUN/ckpt.pt`` (weights, optimizer, step) when present, else from ``--init`` weights
(default: the committed ``models/checkpoint/v2.npz`` if it exists), else starts from the seed. Every
``--save-every`` seconds and at the end it writes ``RUN/ckpt.pt`` and the weights-only ``RUN/weights.npz``
+ ``RUN/weights.json`` (what is committed as ``models/checkpoint/v2.*``). The learning rate is a function
of the step (``SCHEDULE``), and the random streams are seeded from the seed and the step a run starts at,
so a run is reproduced from its checkpoint and command line. Needs the ``train`` extra (PyTorch,
CompressAI).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import signal
import time

import numpy as np
import torch

from tools.torch_codec import Codec, Config, rd_loss  # noqa: E402
from tools.train_data import batches, load_images, load_pack, rd_summary  # noqa: E402

SEED = 20261204
# (first step, learning rate): Adam's rate from that step on, after a linear warm-up over WARMUP steps,
# for batches of REFERENCE_BATCH crops; other batches take it times sqrt(batch / REFERENCE_BATCH). At the
# full rate, batches of 4 on the CPU made the GPU round's model worse within 2 800 steps (2026-12-04: about
# 0.4 dB less at the same rate on four Kodak images, docs/training_v2.md).
SCHEDULE = ((0, 2e-4), (300_000, 1e-4), (500_000, 3e-5), (600_000, 1e-5))
WARMUP = 1000
REFERENCE_BATCH = 32
COMMITTED = pathlib.Path(__file__).resolve().parent.parent / "models" / "checkpoint" / "v2.npz"


def learning_rate(step: int, schedule=SCHEDULE, batch: int = REFERENCE_BATCH) -> float:
    lr = [rate for first, rate in schedule if step >= first][-1]
    return lr * min(1.0, (step + 1) / WARMUP) * math.sqrt(batch / REFERENCE_BATCH)


class PackSampler:
    """Random sub-crops (and flips) of a packed crop set held on the training device as uint8."""

    def __init__(self, crops: np.ndarray, batch, crop, device, generator):
        self.data = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous().to(device)
        self.batch, self.crop, self.gen = batch, crop, generator
        if crop > self.data.shape[2]:
            raise SystemExit(f"train: --crop {crop} is larger than the packed crops ({self.data.shape[2]})")

    def __call__(self):
        n, _, h, w = self.data.shape
        pick = torch.randint(n, (self.batch, 3), generator=self.gen).tolist()
        out = []
        for idx, flip, corner in pick:
            y, x = corner % (h - self.crop + 1), (corner * 7919) % (w - self.crop + 1)
            c = self.data[idx, :, y:y + self.crop, x:x + self.crop]
            out.append(c.flip(2) if flip % 2 else c)
        return torch.stack(out)


class FolderSampler:
    """``train_data.batches`` (area-weighted crops at random scales, flips) moved to the training device."""

    def __init__(self, folders, batch, crop, scale_min, device, seed):
        self.gen = batches(load_images(folders, crop), batch, crop, np.random.default_rng(seed), scale_min)
        self.device = device

    def __call__(self):
        return torch.from_numpy(next(self.gen)).permute(0, 3, 1, 2).to(self.device)


def state_arrays(model: Codec) -> dict:
    return {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}


def load_arrays(model: Codec, arrays: dict, what) -> None:
    state = model.state_dict()
    missing = [k for k in state if k not in arrays or tuple(arrays[k].shape) != tuple(state[k].shape)]
    if missing:
        raise SystemExit(f"train: {what} lacks or mis-shapes {missing[:3]}")
    model.load_state_dict({k: torch.from_numpy(np.asarray(arrays[k])) for k in state})


def write_checkpoint(run: pathlib.Path, model, opt, step, meta) -> None:
    """``RUN/ckpt.pt`` (to resume) and ``RUN/weights.npz`` + ``.json`` (to commit), each replaced atomically."""
    torch.save({**meta, "state": model.state_dict(), "optimizer": opt.state_dict(), "step": step},
               run / "ckpt.tmp.pt")
    os.replace(run / "ckpt.tmp.pt", run / "ckpt.pt")
    np.savez(run / "weights.tmp.npz", **state_arrays(model))
    os.replace(run / "weights.tmp.npz", run / "weights.npz")
    (run / "weights.json").write_text(json.dumps({"step": step, **meta}, indent=1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="*", help="folders of training images (searched recursively)")
    ap.add_argument("--pack", help="train on a packed crop set (tools/gpu_round.py pack) instead of folders")
    ap.add_argument("--run", default="runs/v2", help="run folder for checkpoints and logs")
    ap.add_argument("--init", help=f"weights .npz to start from without RUN/ckpt.pt (default {COMMITTED.name} "
                                   "when committed)")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    ap.add_argument("--batch", type=int, help="crops per step (default 32 on CUDA, 4 on CPU)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--scale-min", type=float, default=0.35, help="folders: random downscaling, as in train.py")
    ap.add_argument("--steps", type=int, default=10**9, help="stop after this many total steps")
    ap.add_argument("--minutes", type=float, default=1e9, help="stop after this much training time")
    ap.add_argument("--save-every", type=float, default=300, help="seconds between checkpoints")
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads")
    ap.add_argument("--compile", choices=("none", "default", "reduce-overhead"), default="none",
                    help="torch.compile the training step's model (falls back to eager if compiling fails); "
                         "reduce-overhead also captures CUDA graphs, which pays where kernel launches dominate")
    args = ap.parse_args(argv)
    if not args.data and not args.pack:
        ap.error("give image folders or --pack")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    batch = args.batch or (32 if device.type == "cuda" else 4)
    run = pathlib.Path(args.run)
    run.mkdir(parents=True, exist_ok=True)

    ckpt = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=False) if (run / "ckpt.pt").exists() else None
    init = pathlib.Path(args.init) if args.init else (COMMITTED if COMMITTED.exists() else None)
    init_meta = json.loads(init.with_suffix(".json").read_text()) if ckpt is None and init else {}
    source = ckpt or init_meta
    cfg = Config.from_dict(source["config"]) if source else Config()
    meta = {"config": cfg.to_dict(), "seed": source.get("seed", SEED),
            "schedule": [list(s) for s in source.get("schedule", SCHEDULE)], "framework": "torch", "version": "v2"}
    schedule = [tuple(s) for s in meta["schedule"]]

    torch.manual_seed(meta["seed"])  # the initial weights of a new model
    model = Codec(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate(0, schedule))
    if ckpt:
        model.load_state_dict(ckpt["state"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        print(f"resumed {run / 'ckpt.pt'} at step {step}", flush=True)
    elif init:
        with np.load(init) as arrays:
            load_arrays(model, dict(arrays), init)
        step = int(init_meta.get("step", 0))
        print(f"initialised from {init} at step {step}", flush=True)
    else:
        step = 0
        print(f"new model from seed {meta['seed']}", flush=True)

    stream_seed = meta["seed"] * 1_000_003 + step  # the random streams of a run that starts at this step
    torch.manual_seed(stream_seed)
    gen = torch.Generator().manual_seed(stream_seed)
    if args.pack:
        sample = PackSampler(load_pack(args.pack), batch, args.crop, device, gen)
        what = f"{sample.data.shape[0]} packed crops"
    else:
        sample = FolderSampler(args.data, batch, args.crop, args.scale_min, device, stream_seed)
        what = f"images under {args.data}"
    lambdas = torch.tensor(cfg.lambdas, device=device)
    n_q = len(cfg.lambdas)
    print(f"training on {device} ({what}), batch {batch}, crop {args.crop}, config {cfg.to_dict()}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    model.train()
    forward = model if args.compile == "none" else torch.compile(model, mode=args.compile)
    t_start = t_save = t_log = time.time()
    records, skipped, start_step = [], 0, step
    with open(run / "train.log", "a") as log:
        while not stop["now"] and step < args.steps and time.time() - t_start < args.minutes * 60:
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, schedule, batch)
            x = sample().float() / 255.0
            quality = torch.randint(n_q, (batch,), generator=gen).to(device)
            try:
                loss, bpp, mse = rd_loss(forward, x, quality, lambdas)
            except Exception as exc:  # noqa: BLE001 - a compiler failure of any kind: train eagerly instead
                if forward is model:
                    raise
                print(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                      "training eagerly", flush=True)
                forward = model
                loss, bpp, mse = rd_loss(forward, x, quality, lambdas)
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                skipped += 1
                if skipped > 50:
                    raise SystemExit(f"train: 50 non-finite losses in a row at step {step}; last save kept")
                continue
            skipped = 0
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 10 == 0:  # a sample of the per-image figures (reading them waits for the device)
                records += list(zip(quality.tolist(), bpp.detach().cpu().tolist(), mse.detach().cpu().tolist()))
            if step % args.log_every == 0:
                now = time.time()
                lr = learning_rate(step, schedule, batch)
                line = (f"step {step} {args.log_every / (now - t_log):.2f} it/s lr {lr:.1e}"
                        f" loss {float(loss):.4f} {rd_summary(records, n_q)}")
                print(line, flush=True)
                log.write(line + "\n")
                log.flush()
                records, t_log = [], now
            if time.time() - t_save > args.save_every:
                write_checkpoint(run, model, opt, step, meta)
                t_save = time.time()
    write_checkpoint(run, model, opt, step, meta)
    print(f"saved at step {step} ({step - start_step} steps in {(time.time() - t_start) / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
