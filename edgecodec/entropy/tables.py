"""Integer CDF tables for the range coder: quantisation from float PMFs, validation, storage.

A table with ``n`` symbols codes the values ``offset .. offset + n - 2`` with symbols
``0 .. n - 2``; symbol ``n - 1`` is the ESCAPE, after which a value outside that range is sent
in raw bits. Row ``i`` of ``cdf`` holds ``lengths[i] + 1`` cumulative frequencies from 0 to
``TOTAL`` (2**16), strictly increasing, so every symbol has a frequency of at least one; entries
past the end of a row are padding and are stored as ``TOTAL``.

This module imports nothing from the C extension, so the pure-Python reference coder can use it.
"""
from __future__ import annotations

import math
import os
import zipfile
from typing import Union

import numpy as np

from edgecodec.errors import EntropyCodingError

PRECISION = 16
TOTAL = 1 << PRECISION
ESCAPE_LENGTH_BITS = 6
ESCAPE_MAX_LENGTH = 33  # bit length of the largest zig-zagged overflow of an int32 value
FILE_VERSION = 1  # of the .npz layout written by CdfTables.save

_INT32 = np.iinfo(np.int32)
PathLike = Union[str, "os.PathLike[str]"]


def _as_int_array(name: str, value, ndim: int) -> np.ndarray:
    """Return ``value`` as a C-contiguous int32 array of ``ndim`` dimensions, or raise."""
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise EntropyCodingError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise EntropyCodingError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < _INT32.min or arr.max() > _INT32.max):
        raise EntropyCodingError(f"{name} has values outside the int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


class CdfTables:
    """A validated, immutable set of 16-bit CDF tables, one per entropy-model context."""

    __slots__ = ("_cdf", "_lengths", "_offsets")

    def __init__(self, cdf, lengths, offsets):
        cdf = _as_int_array("cdf", cdf, 2).copy()
        lengths = _as_int_array("lengths", lengths, 1).copy()
        offsets = _as_int_array("offsets", offsets, 1).copy()
        n_tables, stride = cdf.shape
        if n_tables < 1:
            raise EntropyCodingError("need at least one table")
        if lengths.shape != (n_tables,) or offsets.shape != (n_tables,):
            raise EntropyCodingError(
                f"lengths {lengths.shape} and offsets {offsets.shape} must have one entry per "
                f"table ({n_tables})"
            )
        bad = np.flatnonzero((lengths < 2) | (lengths > stride - 1))
        if bad.size:
            i = bad[0]
            raise EntropyCodingError(
                f"table {i}: length {lengths[i]} outside [2, {stride - 1}] (a regular symbol "
                "and the escape at least; at most the cdf width minus one)"
            )
        rows = np.arange(n_tables)
        if np.any(cdf[:, 0] != 0):
            i = np.flatnonzero(cdf[:, 0] != 0)[0]
            raise EntropyCodingError(f"table {i}: cdf starts at {cdf[i, 0]}, not 0")
        ends = cdf[rows, lengths]
        if np.any(ends != TOTAL):
            i = np.flatnonzero(ends != TOTAL)[0]
            raise EntropyCodingError(
                f"table {i}: cdf ends at {ends[i]}, not {TOTAL} (precision {PRECISION} bits)"
            )
        inside = np.arange(stride - 1)[None, :] < lengths[:, None]
        zero = inside & (np.diff(cdf.astype(np.int64), axis=1) <= 0)
        if zero.any():
            i, s = np.argwhere(zero)[0]
            raise EntropyCodingError(
                f"table {i}: symbol {s} has frequency {int(cdf[i, s + 1]) - int(cdf[i, s])}; "
                "every symbol needs at least 1 (cdf must be strictly increasing)"
            )
        top = offsets.astype(np.int64) + lengths - 2
        if np.any(top > _INT32.max):
            i = np.flatnonzero(top > _INT32.max)[0]
            raise EntropyCodingError(f"table {i}: values offset..offset+length-2 exceed int32")
        cdf[~np.concatenate([np.ones((n_tables, 1), bool), inside], axis=1)] = TOTAL
        for arr in (cdf, lengths, offsets):
            arr.flags.writeable = False
        self._cdf, self._lengths, self._offsets = cdf, lengths, offsets

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pmfs(cls, pmfs, offsets, lengths=None) -> CdfTables:
        """Quantise float PMFs (one row per table) to 16-bit tables with an escape symbol each.

        ``pmfs[i, s]`` is the probability of value ``offsets[i] + s``. Row ``i`` uses its first
        ``lengths[i]`` entries (without the escape), or, if ``lengths`` is None, everything up
        to its last non-zero entry. The escape symbol gets the mass missing from the row
        (``1 - sum``; a row summing to more than one is normalised and its escape gets the
        minimum). Every symbol gets a frequency of at least one.
        """
        pmfs = np.asarray(pmfs, dtype=np.float64)
        if pmfs.ndim != 2 or pmfs.shape[0] < 1 or pmfs.shape[1] < 1:
            raise EntropyCodingError(f"pmfs must be a non-empty 2-D array, got shape {pmfs.shape}")
        if not np.all(np.isfinite(pmfs)) or np.any(pmfs < 0):
            raise EntropyCodingError("pmfs must be finite and non-negative")
        n_tables = pmfs.shape[0]
        offsets = _as_int_array("offsets", offsets, 1)
        if offsets.shape != (n_tables,):
            raise EntropyCodingError(f"offsets must have {n_tables} entries, got {offsets.shape}")
        if lengths is None:
            nonzero = pmfs > 0
            last = pmfs.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
            lengths = np.where(nonzero.any(axis=1), last, 1)
        lengths = _as_int_array("lengths", lengths, 1)
        if lengths.shape != (n_tables,):
            raise EntropyCodingError(f"lengths must have {n_tables} entries, got {lengths.shape}")
        if np.any(lengths < 1) or np.any(lengths > min(pmfs.shape[1], TOTAL - 1)):
            raise EntropyCodingError(
                f"lengths must lie in [1, {min(pmfs.shape[1], TOTAL - 1)}] (the pmf width)"
            )
        width = int(lengths.max()) + 2
        cdf = np.full((n_tables, width), TOTAL, dtype=np.int32)
        for i in range(n_tables):
            freqs = quantize_pmf(pmfs[i, : lengths[i]])
            cdf[i, 0] = 0
            cdf[i, 1 : freqs.size + 1] = np.cumsum(freqs)
        return cls(cdf, lengths + 1, offsets)

    # ------------------------------------------------------------------ accessors

    @property
    def cdf(self) -> np.ndarray:
        """Read-only (n_tables, width) int32 cumulative frequencies."""
        return self._cdf

    @property
    def lengths(self) -> np.ndarray:
        """Read-only int32 number of symbols per table, the escape included."""
        return self._lengths

    @property
    def offsets(self) -> np.ndarray:
        """Read-only int32 value coded by symbol 0 of each table."""
        return self._offsets

    @property
    def n_tables(self) -> int:
        return int(self._cdf.shape[0])

    def __len__(self) -> int:
        return self.n_tables

    def __repr__(self) -> str:
        return (
            f"CdfTables(n_tables={self.n_tables}, symbols={int(self._lengths.min())}.."
            f"{int(self._lengths.max())}, precision={PRECISION})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CdfTables):
            return NotImplemented
        return (
            np.array_equal(self._cdf, other._cdf)
            and np.array_equal(self._lengths, other._lengths)
            and np.array_equal(self._offsets, other._offsets)
        )

    __hash__ = None  # type: ignore[assignment]

    def freqs(self, index: int) -> np.ndarray:
        """Return the integer frequencies of table ``index``; the last one is the escape's."""
        return np.diff(self._cdf[index, : self._lengths[index] + 1]).astype(np.int64)

    def estimate_bits(self, symbols, indexes) -> float:
        """Return the information content -sum(log2 p) of ``symbols`` under these tables.

        Escaped values count the escape symbol plus their raw bits exactly, so this is what an
        ideal entropy coder would spend; the range coder adds a few bytes at most.
        """
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        if symbols.shape != indexes.shape:
            raise EntropyCodingError("symbols and indexes differ in size")
        if indexes.size and (indexes.min() < 0 or indexes.max() >= self.n_tables):
            raise EntropyCodingError("indexes out of range")
        nreg = self._lengths[indexes].astype(np.int64) - 1
        s = symbols - self._offsets[indexes]
        escaped = (s < 0) | (s >= nreg)
        col = np.where(escaped, nreg, s)
        freq = self._cdf[indexes, col + 1].astype(np.int64) - self._cdf[indexes, col]
        bits = float(np.sum(PRECISION - np.log2(freq)))
        if escaped.any():
            d = np.where(s < 0, s, s - nreg)[escaped]
            u = np.where(d >= 0, 2 * d, -2 * d - 1)
            m = np.zeros(u.shape, dtype=np.int64)
            nz = u > 0
            m[nz] = np.floor(np.log2(u[nz])).astype(np.int64) + 1
            bits += float(np.sum(ESCAPE_LENGTH_BITS + np.maximum(m - 1, 0)))
        return bits

    # ------------------------------------------------------------------ storage

    def save(self, path: PathLike) -> None:
        """Write the tables to an ``.npz`` file that ``load`` validates on reading."""
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                format_version=np.int32(FILE_VERSION),
                precision=np.int32(PRECISION),
                cdf=self._cdf,
                lengths=self._lengths,
                offsets=self._offsets,
            )

    @classmethod
    def load(cls, path: PathLike) -> CdfTables:
        """Read and validate tables written by ``save``."""
        with open(path, "rb") as f:  # a missing or unreadable file raises OSError as usual
            try:
                with np.load(f, allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                raise EntropyCodingError(f"{path}: not a CDF table file ({exc})") from exc
        missing = {"format_version", "precision", "cdf", "lengths", "offsets"} - arrays.keys()
        if missing:
            raise EntropyCodingError(f"{path}: missing {', '.join(sorted(missing))}")
        if int(arrays["format_version"]) != FILE_VERSION:
            raise EntropyCodingError(
                f"{path}: table file version {int(arrays['format_version'])}, expected "
                f"{FILE_VERSION}"
            )
        if int(arrays["precision"]) != PRECISION:
            raise EntropyCodingError(
                f"{path}: {int(arrays['precision'])}-bit tables, expected {PRECISION}-bit"
            )
        try:
            return cls(arrays["cdf"], arrays["lengths"], arrays["offsets"])
        except EntropyCodingError as exc:
            raise EntropyCodingError(f"{path}: {exc}") from None


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Return int64 frequencies summing to ``TOTAL`` for ``pmf`` plus an escape symbol.

    Maximises sum(p * F(f)) over integer f >= 1, where F(f) = sum_{k<f} 1 / (k + 1/2) is a close
    stand-in for ln(f): rounding first, then moving single units between symbols in batches
    while adding to one gains more than removing from another loses. F's marginals are
    rational, so the result depends only on IEEE-exact operations and is reproducible.
    """
    p = np.asarray(pmf, dtype=np.float64)
    mass = math.fsum(p.tolist())
    if not mass > 0:
        raise EntropyCodingError("a pmf row has no probability mass")
    if mass > 1.0:
        p = p / mass
        mass = 1.0
    p = np.append(p, 1.0 - mass)  # the escape symbol gets the tail mass
    if p.size > TOTAL:
        raise EntropyCodingError(f"at most {TOTAL - 1} symbols per table")
    f = np.maximum(1, np.rint(p * TOTAL)).astype(np.int64)
    diff = TOTAL - int(f.sum())
    while diff > 0:  # add units where they gain most
        take = np.argsort(-(p / (f + 0.5)), kind="stable")[:diff]
        f[take] += 1
        diff -= take.size
    while diff < 0:  # remove units where they cost least
        movable = np.flatnonzero(f > 1)
        take = movable[np.argsort(p[movable] / (f[movable] - 0.5), kind="stable")][:-diff]
        f[take] -= 1
        diff += take.size
    while True:  # exchange units while that helps; each batch strictly improves the objective
        gain = p / (f + 0.5)
        loss = np.where(f > 1, p / np.maximum(f - 0.5, 0.5), np.inf)
        to = np.argsort(-gain, kind="stable")
        fro = np.argsort(loss, kind="stable")
        k = int(np.count_nonzero(gain[to] > loss[fro]))  # a prefix: gains fall, losses rise
        if k == 0:
            return f
        f[to[:k]] += 1
        f[fro[:k]] -= 1
