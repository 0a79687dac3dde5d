"""Pure-Python range coder, byte-for-byte identical to the C one: a test oracle and a spec.

Slow (a few microseconds per symbol); use it on small arrays. The algorithm, in Python integers:

    state:  low = 0, range = 2**64 - 1
    code (start, freq) of 2**k:   r = range >> k;  low += r * start;  range = r * freq
    renormalise:                  if range < 2**32: emit (low >> 32) big-endian over 4 bytes,
                                  low = (low << 32) mod 2**64, range <<= 32
    carry:                        low >= 2**64 adds one to the bytes already emitted
    finish:                       emit the v in [low, low + range) with most trailing zeros as
                                  8 bytes, then strip trailing zero bytes

A regular symbol uses k = 16 and its table's (start, freq); an out-of-range value codes the
escape symbol, then 6 raw bits of length m and m - 1 raw bits of the zig-zagged overflow.
"""
from __future__ import annotations

import numpy as np

from edgecodec.entropy.tables import ESCAPE_LENGTH_BITS, ESCAPE_MAX_LENGTH, PRECISION, CdfTables
from edgecodec.errors import EntropyCodingError

_MASK64 = (1 << 64) - 1
_RANGE_MIN = 1 << 32
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _zigzag(d: int) -> int:
    return 2 * d if d >= 0 else -2 * d - 1


def _unzigzag(u: int) -> int:
    return -(u >> 1) - 1 if u & 1 else u >> 1


def _escape_chunks(u: int) -> list[tuple[int, int]]:
    """Return the (value, bits) raw fields that code the zig-zagged overflow ``u``."""
    m = u.bit_length()
    fields = [(m, ESCAPE_LENGTH_BITS)]
    k = m - 1
    if k > 0:
        rest = u & ((1 << k) - 1)
        if k > 16:
            fields.append((rest >> 16, k - 16))
            k = 16
        fields.append((rest & 0xFFFF, k))
    return fields


class _Encoder:
    def __init__(self) -> None:
        self.low = 0
        self.range = _MASK64
        self.out = bytearray()

    def put(self, start: int, freq: int, bits: int) -> None:
        r = self.range >> bits
        self.low += r * start
        if self.low > _MASK64:
            self._carry()
            self.low &= _MASK64
        self.range = r * freq
        if self.range < _RANGE_MIN:
            self.out += (self.low >> 32).to_bytes(4, "big")
            self.low = (self.low << 32) & _MASK64
            self.range <<= 32

    def _carry(self) -> None:
        i = len(self.out) - 1
        while i >= 0:
            self.out[i] = (self.out[i] + 1) & 0xFF
            if self.out[i]:
                break
            i -= 1

    def finish(self) -> bytes:
        for k in range(64, -1, -1):
            v = -(-self.low >> k) << k  # the smallest multiple of 2**k that is >= low
            if v - self.low < self.range:
                break
        if v > _MASK64:
            self._carry()
        self.out += (v & _MASK64).to_bytes(8, "big")
        return bytes(self.out).rstrip(b"\0")


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.code = (self._word() << 32) | self._word()
        self.range = _MASK64

    def _word(self) -> int:
        chunk = self.data[self.pos : self.pos + 4]
        self.pos += 4
        return int.from_bytes(chunk.ljust(4, b"\0"), "big")

    def target(self, bits: int) -> tuple[int, int]:
        r = self.range >> bits
        return r, self.code // r

    def narrow(self, r: int, start: int, freq: int) -> None:
        self.code -= r * start
        self.range = r * freq
        if self.range < _RANGE_MIN:
            self.code = (self.code << 32) | self._word()
            self.range <<= 32

    def bits(self, k: int, where: int) -> int:
        r, b = self.target(k)
        if b >> k:
            raise EntropyCodingError(f"corrupt data: no symbol matches at position {where}")
        self.narrow(r, b, 1)
        return b


def _int_list(name: str, values) -> list[int]:
    arr = np.asarray(values)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise EntropyCodingError(f"{name} must be integers")
    out = [int(v) for v in arr.ravel()]
    if out and (min(out) < _INT32_MIN or max(out) > _INT32_MAX):
        raise EntropyCodingError(f"{name} has values outside the int32 range")
    return out


def _rows(tables: CdfTables) -> list[tuple[list[int], int, int]]:
    return [
        (tables.cdf[i, : n + 1].tolist(), int(n) - 1, int(o))
        for i, (n, o) in enumerate(zip(tables.lengths, tables.offsets))
    ]


def _check_index(idx: int, i: int, n_tables: int) -> None:
    if not 0 <= idx < n_tables:
        raise EntropyCodingError(f"index {idx} at position {i} is outside [0, {n_tables})")


def encode(symbols, indexes, tables: CdfTables) -> bytes:
    """Same contract and bytes as ``edgecodec.entropy.encode``."""
    symbols = _int_list("symbols", symbols)
    indexes = _int_list("indexes", indexes)
    if len(symbols) != len(indexes):
        raise EntropyCodingError("symbols and indexes differ in length")
    rows = _rows(tables)
    enc = _Encoder()
    for i, (value, idx) in enumerate(zip(symbols, indexes)):
        _check_index(idx, i, len(rows))
        cdf, nreg, offset = rows[idx]
        s = value - offset
        if 0 <= s < nreg:
            enc.put(cdf[s], cdf[s + 1] - cdf[s], PRECISION)
        else:
            enc.put(cdf[nreg], cdf[nreg + 1] - cdf[nreg], PRECISION)
            for field, bits in _escape_chunks(_zigzag(s if s < 0 else s - nreg)):
                enc.put(field, 1, bits)
    return enc.finish()


def decode(data, indexes, tables: CdfTables) -> np.ndarray:
    """Same contract and results as ``edgecodec.entropy.decode``."""
    shape = np.shape(indexes)
    indexes = _int_list("indexes", indexes)
    rows = _rows(tables)
    dec = _Decoder(bytes(data))
    out = []
    for i, idx in enumerate(indexes):
        _check_index(idx, i, len(rows))
        cdf, nreg, offset = rows[idx]
        r, t = dec.target(PRECISION)
        if t >= cdf[-1]:
            raise EntropyCodingError(f"corrupt data: no symbol matches at position {i}")
        s = next(j for j in range(nreg, -1, -1) if cdf[j] <= t)
        dec.narrow(r, cdf[s], cdf[s + 1] - cdf[s])
        if s < nreg:
            out.append(offset + s)
            continue
        m = dec.bits(ESCAPE_LENGTH_BITS, i)
        if m > ESCAPE_MAX_LENGTH:
            raise EntropyCodingError(
                f"corrupt data: escape length {m} > {ESCAPE_MAX_LENGTH} at position {i}"
            )
        u = 0
        if m:
            k, hi = m - 1, 0
            if k > 16:
                hi = dec.bits(k - 16, i)
                k = 16
            lo = dec.bits(k, i) if k else 0
            u = (1 << (m - 1)) | (hi << 16) | lo
        d = _unzigzag(u)
        value = offset + (d if d < 0 else d + nreg)
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise EntropyCodingError(f"corrupt data: escaped value at position {i} is outside int32")
        out.append(value)
    if len(dec.data) > dec.pos:
        raise EntropyCodingError(
            f"corrupt data: {len(dec.data) - dec.pos} trailing bytes after the last symbol"
        )
    return np.array(out, dtype=np.int32).reshape(shape)
