#!/usr/bin/env python3
"""Benchmark edgecodec's range coder against constriction's on realistic latent statistics.

Builds 64 tables (32 quantised Gaussians, 32 quantised Laplacians, scales 0.11 .. 32, as a
hyperprior's scale table would), draws symbols by rounding samples of the continuous
distributions (so a few land outside the tables and are escaped), and times encode and decode of
all of them, best of --repeat runs. constriction's ``RangeEncoder``/``RangeDecoder`` code the same
symbols with ``Categorical`` models built from our quantised frequencies, one model per table
over that table's symbols (its fastest path: one fixed model per call); escaped values count as
the escape category there, without their raw bits.

    python -m tools.bench_coder [--n 1000000] [--repeat 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

from edgecodec.entropy import CdfTables, decode, encode

N_SCALES = 32


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x.tolist()])


def _laplace_cdf(x: np.ndarray, b: float) -> np.ndarray:
    return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0) / b), 1 - 0.5 * np.exp(-np.maximum(x, 0) / b))


def build_tables() -> tuple[CdfTables, list[tuple[str, float]]]:
    """Return 64 tables and the (family, scale) each was built from."""
    scales = np.exp(np.linspace(math.log(0.11), math.log(32.0), N_SCALES))
    specs = [("gaussian", float(s)) for s in scales] + [("laplace", float(s)) for s in scales]
    rows, offsets = [], []
    for family, s in specs:
        half = max(1, math.ceil(s * (6 if family == "gaussian" else 12)))
        edges = np.arange(-half, half + 2) - 0.5
        cdf = _norm_cdf(edges / s) if family == "gaussian" else _laplace_cdf(edges, s)
        rows.append(np.diff(cdf))
        offsets.append(-half)
    width = max(r.size for r in rows)
    pmfs = np.zeros((len(rows), width))
    lengths = np.array([r.size for r in rows])
    for i, r in enumerate(rows):
        pmfs[i, : r.size] = r
    return CdfTables.from_pmfs(pmfs, np.array(offsets), lengths), specs


def draw_symbols(specs, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    indexes = rng.integers(0, len(specs), n).astype(np.int32)
    scale = np.array([s for _, s in specs])[indexes]
    gaussian = np.array([f == "gaussian" for f, _ in specs])[indexes]
    x = np.where(gaussian, rng.normal(0.0, 1.0, n) * scale, rng.laplace(0.0, 1.0, n) * scale)
    return np.rint(x).astype(np.int32), indexes


def machine() -> str:
    """Return the CPU model and core count, for the record."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def best_time(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_ours(symbols, indexes, tables, repeat):
    data = encode(symbols, indexes, tables)
    assert np.array_equal(decode(data, indexes, tables), symbols), "round trip failed"
    return {
        "bytes": len(data),
        "encode_s": best_time(lambda: encode(symbols, indexes, tables), repeat),
        "decode_s": best_time(lambda: decode(data, indexes, tables), repeat),
    }


def bench_constriction(symbols, indexes, tables, repeat):
    import constriction

    model_cls = constriction.stream.model.Categorical
    order = np.argsort(indexes, kind="stable")
    idx_sorted = indexes[order]
    bounds = np.searchsorted(idx_sorted, np.arange(tables.n_tables + 1))
    groups, models = [], []
    for i in range(tables.n_tables):
        nreg = int(tables.lengths[i]) - 1
        s = symbols[order[bounds[i] : bounds[i + 1]]].astype(np.int64) - int(tables.offsets[i])
        s[(s < 0) | (s >= nreg)] = nreg  # the escape category
        groups.append(s.astype(np.int32))
        models.append(model_cls(tables.freqs(i) / 65536.0, perfect=False))

    def run_encode():
        enc = constriction.stream.queue.RangeEncoder()
        for g, m in zip(groups, models):
            enc.encode(g, m)
        return enc.get_compressed()

    compressed = run_encode()

    def run_decode():
        dec = constriction.stream.queue.RangeDecoder(compressed)
        return [dec.decode(m, g.size) for g, m in zip(groups, models)]

    assert all(np.array_equal(a, b) for a, b in zip(run_decode(), groups)), "constriction failed"
    return {
        "bytes": int(compressed.nbytes),
        "encode_s": best_time(run_encode, repeat),
        "decode_s": best_time(run_decode, repeat),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="symbols to code (default 1M)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    tables, specs = build_tables()
    symbols, indexes = draw_symbols(specs, args.n, args.seed)
    ideal_bytes = tables.estimate_bits(symbols, indexes) / 8
    s = symbols.astype(np.int64) - tables.offsets[indexes]
    n_escaped = int(np.sum((s < 0) | (s >= tables.lengths[indexes] - 1)))
    result = {
        "n_symbols": args.n,
        "n_tables": tables.n_tables,
        "escaped": n_escaped,
        "ideal_bytes": ideal_bytes,
        "machine": machine(),
        "python": platform.python_version(),
        "coders": {"edgecodec": bench_ours(symbols, indexes, tables, args.repeat)},
    }
    try:
        result["coders"]["constriction"] = bench_constriction(symbols, indexes, tables, args.repeat)
    except ImportError:
        print("constriction not installed: pip install constriction", file=sys.stderr)
    for r in result["coders"].values():
        r["encode_msym_s"] = args.n / r["encode_s"] / 1e6
        r["decode_msym_s"] = args.n / r["decode_s"] / 1e6
        r["overhead_pct"] = 100.0 * (r["bytes"] / ideal_bytes - 1.0)
    if "constriction" in result["coders"]:
        ours, theirs = result["coders"]["edgecodec"], result["coders"]["constriction"]
        result["speedup_vs_constriction"] = {
            "encode": theirs["encode_s"] / ours["encode_s"],
            "decode": theirs["decode_s"] / ours["decode_s"],
        }

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['machine']}, Python {result['python']}")
    print(f"{args.n} symbols, {tables.n_tables} tables, {n_escaped} escaped; "
          f"ideal {ideal_bytes:.0f} bytes ({8 * ideal_bytes / args.n:.3f} bits/symbol)")
    print(f"{'coder':<14}{'encode Msym/s':>15}{'decode Msym/s':>15}{'bytes':>12}{'vs ideal':>10}")
    for name, r in result["coders"].items():
        print(f"{name:<14}{r['encode_msym_s']:>15.1f}{r['decode_msym_s']:>15.1f}{r['bytes']:>12}"
              f"{r['overhead_pct']:>+9.3f}%")
    if "speedup_vs_constriction" in result:
        sp = result["speedup_vs_constriction"]
        print(f"edgecodec / constriction speed: encode x{sp['encode']:.2f}, decode x{sp['decode']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
