"""A prepared round of model v2 training on a lent GPU machine (the workplace's ``device`` tool).

Such a machine has PyTorch and CUDA but no network and no CompressAI, takes at most 64 MiB of working
tree and gives back at most 8 files of 16 MiB; a task gets 15 minutes of it, start-up included. So:

1. here: ``python -m tools.gpu_round prepare ../shared/data/train`` packs augmented crops into
   ``.gpu/pack.npz`` (JPEG 4:4:4 q95, within ``--budget-mib``), downloads CompressAI's wheel for the
   machine's Python into ``.whl/`` (both folders git-ignored through .git/info/exclude), checks that the
   tree that travels fits, and prints the device command;
2. there (the printed command, ``carry: [".gpu", ".whl"]``): ``python3 -m tools.gpu_round device`` resumes from the
   committed ``models/checkpoint/v2.npz`` (or the seed), trains for ``--minutes`` (default 8.5) and
   writes the checkpoint into ``$OUT`` in parts of at most 15 MiB, with the log;
3. here: ``python -m tools.gpu_round collect FILES_AT --run runs/v2`` joins the parts into
   ``RUN/ckpt.pt`` and ``RUN/weights.*``, so CPU training resumes from it
   (``python -m tools.train_torch ../shared/data/train --run runs/v2``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
from tools.train_data import load_images, pack_crops  # noqa: E402

PACK = ".gpu/pack.npz"
WHEELS = ".whl"
PART = 15 * 2 ** 20  # under the 16 MiB a returned file may have
TREE_LIMIT = 64 * 2 ** 20
DEVICE_PYTHON = "3.12"
DEVICE_WHEELS = ("compressai==1.2.8", "pytorch-msssim==1.0.0")  # the rest of CompressAI's needs is there
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DEVICE_COMMAND = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
                  "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3; "
                  "PYTHONUNBUFFERED=1 python3 -m tools.gpu_round device --minutes {minutes}")


def travelling_bytes() -> int:
    """Bytes of the tree that travels: tracked and untracked-not-ignored files, plus the carried folders."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    total = sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())
    for folder in (".gpu", WHEELS):
        total += sum(p.stat().st_size for p in (ROOT / folder).rglob("*") if p.is_file())
    return total


def prepare(args) -> None:
    pack = ROOT / PACK
    pack.parent.mkdir(exist_ok=True)
    if args.repack or not pack.exists():
        images = load_images(args.data, args.crop)
        rng = np.random.default_rng(args.seed)
        n = pack_crops(images, pack, int(args.budget_mib * 2 ** 20), args.crop, rng)
        print(f"packed {n} crops of {args.crop} from {len(images)} images: {pack.stat().st_size / 2**20:.1f} MiB")
    wheels = ROOT / WHEELS
    if not all(any(wheels.glob(w.split("==")[0].replace("-", "_") + "-" + w.split("==")[1] + "-*.whl"))
               for w in DEVICE_WHEELS):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", DEVICE_PYTHON, "--implementation", "cp", "-d", str(wheels), *DEVICE_WHEELS]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        subprocess.run(cmd, check=True)
    size = travelling_bytes()
    print(f"the tree that travels: {size / 2**20:.1f} MiB of {TREE_LIMIT / 2**20:.0f}")
    if size > TREE_LIMIT:
        raise SystemExit("prepare: too large to travel; repack with a smaller --budget-mib")
    print("device run:", json.dumps({"command": DEVICE_COMMAND.format(minutes=args.minutes),
                                     "carry": [".gpu", WHEELS], "timeout_s": 600}))


def split_into(src: pathlib.Path, out: pathlib.Path) -> list:
    """Copy ``src`` into ``out`` as ``NAME.partK`` files of at most PART bytes; returns their names."""
    names = []
    with open(src, "rb") as f:
        for k in range(10**6):
            chunk = f.read(PART)
            if not chunk:
                break
            (out / f"{src.name}.part{k}").write_bytes(chunk)
            names.append(f"{src.name}.part{k}")
    return names


def device(args) -> None:
    out = pathlib.Path(os.environ.get("OUT") or args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = pathlib.Path("/tmp/gpu_run")
    # As a module from the repository root: tools and edgecodec import from the tree, nothing is installed.
    cmd = [sys.executable, "-m", "tools.train_torch", "--pack", str(ROOT / PACK), "--run", str(run),
           "--minutes", str(args.minutes), "--save-every", "120", "--log-every", str(args.log_every)]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.init:
        cmd += ["--init", args.init]
    if args.compile != "none":
        cmd += ["--compile", args.compile]
    t0 = time.time()
    with open(out / "train_stdout.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    print(f"training exited {rc} after {time.time() - t0:.0f} s", flush=True)
    returned = []
    for name in ("ckpt.pt", "weights.npz"):
        if (run / name).exists():
            returned += split_into(run / name, out)
    if (run / "weights.json").exists():
        (out / "weights.json").write_text((run / "weights.json").read_text())
        returned.append("weights.json")
    manifest = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in returned}
    (out / "parts.json").write_text(json.dumps(manifest, indent=1))
    print(f"returned {returned}", flush=True)
    sys.exit(rc)


def collect(args) -> None:
    src, run = pathlib.Path(args.files_at), pathlib.Path(args.run)
    found = list(src.rglob("parts.json"))
    if not found:
        raise SystemExit(f"collect: no parts.json under {src}")
    src = found[0].parent
    manifest = json.loads(found[0].read_text())
    for name, digest in manifest.items():
        if hashlib.sha256((src / name).read_bytes()).hexdigest() != digest:
            raise SystemExit(f"collect: {name} does not match its SHA-256")
    run.mkdir(parents=True, exist_ok=True)
    for target in ("ckpt.pt", "weights.npz"):
        parts = sorted((n for n in manifest if n.startswith(target + ".part")), key=lambda n: int(n.rsplit("part", 1)[1]))
        if parts:
            tmp = run / (target + ".tmp")
            with open(tmp, "wb") as f:
                for n in parts:
                    f.write((src / n).read_bytes())
            os.replace(tmp, run / target)
    if "weights.json" in manifest:  # copied as text: the returned files are read-only
        (run / "weights.json").write_text((src / "weights.json").read_text())
    if (src / "train_stdout.log").exists():
        with open(run / "train.log", "a") as log:
            log.write((src / "train_stdout.log").read_text())
    step = json.loads((run / "weights.json").read_text())["step"] if (run / "weights.json").exists() else "?"
    print(f"collected the GPU round into {run} (step {step})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare", help="pack the data, fetch the wheels, check the size, print the command")
    p.add_argument("data", nargs="+", help="folders of training images")
    p.add_argument("--budget-mib", type=float, default=18.0,
                   help="size of the packed crops (the whole tree that travels must stay under 64 MiB)")
    p.add_argument("--crop", type=int, default=320, help="side of the packed crops (training cuts 256)")
    p.add_argument("--seed", type=int, default=20261204)
    p.add_argument("--repack", action="store_true", help="pack again even if .gpu/pack.npz exists")
    p.add_argument("--minutes", type=float, default=8.5, help="training minutes to put in the command")
    p.set_defaults(func=prepare)
    p = sub.add_parser("device", help="(on the GPU machine) train and write the checkpoint parts to $OUT")
    p.add_argument("--minutes", type=float, default=8.5)
    p.add_argument("--batch", type=int, help="default: train_torch.py's for CUDA")
    p.add_argument("--log-every", type=int, default=500)
    p.add_argument("--init", help="weights to start from instead of the committed ones")
    p.add_argument("--compile", choices=("none", "default", "reduce-overhead"), default="none",
                   help="train_torch.py --compile (untried on the GPU so far: compare its steps/s)")
    p.add_argument("--out", default="out/gpu", help="where to write without $OUT (a CPU rehearsal)")
    p.set_defaults(func=device)
    p = sub.add_parser("collect", help="join the returned parts into a run folder")
    p.add_argument("files_at", help="the folder the device tool put the files in")
    p.add_argument("--run", default="runs/v2")
    p.set_defaults(func=collect)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
