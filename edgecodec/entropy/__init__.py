"""Entropy coding of integer symbols against 16-bit CDF tables, with a C range coder.

    >>> tables = CdfTables.from_pmfs(pmfs, offsets)     # once, when a model is exported
    >>> data = encode(symbols, indexes, tables)          # indexes[i] names the table of symbols[i]
    >>> decode(data, indexes, tables)                    # -> np.int32 array, same shape as indexes

Any int32 value can be coded: values outside a table's range go through its escape symbol. The
coder itself (stream format, escape coding, safety) is described in ``_rangecoder.c``;
``edgecodec.entropy.reference`` is a slow pure-Python twin that produces the same bytes.
"""
from __future__ import annotations

import numpy as np

from edgecodec.entropy.tables import PRECISION, TOTAL, CdfTables, quantize_pmf
from edgecodec.errors import EntropyCodingError

try:
    from edgecodec.entropy import _rangecoder
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "edgecodec's C range coder is not built; run `pip install -e .` in the source tree"
    ) from exc

__all__ = ["CdfTables", "encode", "decode", "quantize_pmf", "PRECISION", "TOTAL", "FORMAT_VERSION"]

#: Version of the coded stream layout; bump on any change to the bytes produced.
FORMAT_VERSION: int = _rangecoder.FORMAT_VERSION
if _rangecoder.PRECISION != PRECISION:  # pragma: no cover - build/source mismatch
    raise ImportError("edgecodec: C range coder and tables.py disagree on the precision")

_INT32 = np.iinfo(np.int32)


def _int32_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.int32:
        return np.ascontiguousarray(arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise EntropyCodingError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.min() < _INT32.min or arr.max() > _INT32.max:
        raise EntropyCodingError(f"{name} has values outside the int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _check_tables(tables) -> None:
    if not isinstance(tables, CdfTables):
        raise TypeError(f"tables must be CdfTables, not {type(tables).__name__}")


def encode(symbols, indexes, tables: CdfTables) -> bytes:
    """Range-code ``symbols``, each with the table named by ``indexes`` at the same position."""
    _check_tables(tables)
    symbols = _int32_array("symbols", symbols)
    indexes = _int32_array("indexes", indexes)
    if symbols.shape != indexes.shape:
        raise EntropyCodingError(
            f"symbols {symbols.shape} and indexes {indexes.shape} must have the same shape"
        )
    return _rangecoder.encode(
        symbols.ravel(), indexes.ravel(), tables.cdf, tables.lengths, tables.offsets
    )


def decode(data, indexes, tables: CdfTables) -> np.ndarray:
    """Decode one symbol per entry of ``indexes`` from ``data``; return int32, shaped as indexes.

    Raises EntropyCodingError when ``data`` cannot have come from ``encode`` with these
    indexes and tables (not every corruption is detectable: that is the container's CRC's job).
    """
    _check_tables(tables)
    indexes = _int32_array("indexes", indexes)
    out = np.empty(indexes.shape, dtype=np.int32)
    _rangecoder.decode(data, indexes.ravel(), tables.cdf, tables.lengths, tables.offsets,
                       out.reshape(-1))
    return out
