"""Tables and symbol draws shared by the entropy-coder tests (not a test module itself)."""
from __future__ import annotations

import math

import numpy as np

from edgecodec.entropy import CdfTables, decode, encode
from edgecodec.entropy import reference

#: name -> (encode, decode): every coder test runs against the C coder and the reference.
CODERS = {
    "c": (encode, decode),
    "reference": (reference.encode, reference.decode),
}


def gaussian_pmf(scale: float, half: int) -> np.ndarray:
    """P(round(x) = k) for x ~ N(0, scale), k = -half .. half."""
    edges = (np.arange(-half, half + 2) - 0.5) / scale
    cdf = np.array([0.5 * math.erfc(-e / math.sqrt(2.0)) for e in edges])
    return np.diff(cdf)


def gaussian_tables(scales=(0.12, 0.5, 1.0, 2.5, 6.0, 20.0)) -> CdfTables:
    """Quantised Gaussian tables of support +-ceil(6 scale), like a hyperprior's scale table."""
    halves = [max(1, math.ceil(6 * s)) for s in scales]
    width = 2 * max(halves) + 1
    pmfs = np.zeros((len(scales), width))
    for i, (s, h) in enumerate(zip(scales, halves)):
        pmfs[i, : 2 * h + 1] = gaussian_pmf(s, h)
    return CdfTables.from_pmfs(pmfs, [-h for h in halves], [2 * h + 1 for h in halves])


def random_tables(rng: np.random.Generator, n_tables: int, max_symbols: int) -> CdfTables:
    """Tables of random length, offset and shape: flat, peaked, and near-deterministic rows."""
    lengths = rng.integers(1, max_symbols + 1, n_tables)
    pmfs = np.zeros((n_tables, max_symbols))
    for i, n in enumerate(lengths):
        kind = rng.integers(3)
        if kind == 0:
            p = rng.dirichlet(np.ones(n))
        elif kind == 1:
            p = rng.dirichlet(np.full(n, 0.05))
        else:
            p = np.full(n, 1e-9)
            p[rng.integers(n)] = 1.0
        pmfs[i, :n] = p * rng.uniform(0.9, 1.0)  # leave some mass to the escape
    offsets = rng.integers(-1000, 1000, n_tables)
    return CdfTables.from_pmfs(pmfs, offsets, lengths)


def draw(rng: np.random.Generator, tables: CdfTables, n: int, escape_rate: float = 0.0):
    """Draw ``n`` (symbols, indexes) from the tables' own distributions plus some escapes."""
    indexes = rng.integers(0, tables.n_tables, n).astype(np.int32)
    symbols = np.empty(n, dtype=np.int64)
    for i in range(tables.n_tables):
        where = np.flatnonzero(indexes == i)
        f = tables.freqs(i)[:-1].astype(np.float64)
        symbols[where] = tables.offsets[i] + rng.choice(f.size, where.size, p=f / f.sum())
    escaped = rng.random(n) < escape_rate
    symbols[escaped] = rng.integers(-(2**31), 2**31, int(escaped.sum()))
    return symbols.astype(np.int32), indexes


def ideal_bits(tables: CdfTables, symbols, indexes) -> float:
    """-sum(log2 p) of in-range symbols, computed independently of CdfTables.estimate_bits."""
    total = 0.0
    for s, i in zip(np.asarray(symbols).tolist(), np.asarray(indexes).tolist()):
        k = s - int(tables.offsets[i])
        assert 0 <= k < tables.lengths[i] - 1, "ideal_bits() handles in-range symbols only"
        total -= math.log2((int(tables.cdf[i, k + 1]) - int(tables.cdf[i, k])) / 65536)
    return total
