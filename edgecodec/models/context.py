"""Checkerboard context model in integers (He et al., CVPR 2021): the second coding pass.

Latents are coded in two passes over a checkerboard of positions. Anchors ((row + column) even) are coded
with the hyper-synthesis' tables and means alone. Each non-anchor position then gets a correction to its
table index and its mean from its four anchor neighbours (up, left, right, down), which the decoder already
holds. The correction is a 4-tap convolution with per-quality int8 weights (the quality's inverse gain is
folded in, so the taps act on the gained integer latents directly). It is added to the hyper-synthesis'
fixed-point accumulators before their final shift, so encoder and decoder compute it bit-identically for the
same reason they compute the hyper-synthesis identically (see ``hyper`` and ``docs/models.md``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgecodec.errors import ModelError
from edgecodec.models import contract, int8
from edgecodec.models.blas import matmul

TAPS = len(contract.CONTEXT_TAPS)
# Latents are int8 ([-128, 127]); weights are in [-127, 127]. A sum of TAPS * channels such products
# must stay below 2**24 to be exact in float32.
MAX_CHANNELS = (1 << 24) // (TAPS * 128 * 127)


def anchors(height: int, width: int) -> np.ndarray:
    """Boolean (H, W): True where a latent position is an anchor, coded in the first pass."""
    return (np.add.outer(np.arange(height), np.arange(width)) % 2) == 0


@lru_cache(maxsize=16)
def passes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions (int32, raster order) of the anchors, then of the other latents: the two passes."""
    first = anchors(height, width).ravel()
    rows = (np.flatnonzero(first).astype(np.int32), np.flatnonzero(~first).astype(np.int32))
    for r in rows:
        r.flags.writeable = False
    return rows


class CheckerboardContext:
    """Per-quality int8 taps (Q, 4, M, 2M), fixed-point multipliers and offsets (Q, 2M).

    Output channels 0..M-1 correct the table index, M..2M-1 the mean, both in the fixed-point units of
    the hyper-synthesis' last layer (``HyperSynthesis.predict_fixed``)."""

    def __init__(self, arrays, latent_channels: int, qualities: int):
        try:
            self.weights = np.asarray(arrays["ctx_w"], np.int8)
            self.mult = np.asarray(arrays["ctx_mult"], np.int64)
            self.offset = np.asarray(arrays["ctx_offset"], np.int64)
        except KeyError as exc:
            raise ModelError(f"checkerboard context lacks {exc}") from None
        m = latent_channels
        if self.weights.shape != (qualities, TAPS, m, 2 * m) or self.mult.shape != (qualities, 2 * m) \
                or self.offset.shape != (qualities, 2 * m):
            raise ModelError("checkerboard context shapes do not match the hyper-synthesis")
        if m > MAX_CHANNELS or np.abs(self.weights.astype(int)).max(initial=0) > 127:
            raise ModelError("checkerboard context too wide for exact float32 accumulation")
        self.latent_channels = m
        flat = [w.reshape(TAPS * m, 2 * m) for w in self.weights]
        self._packed = [int8.pack(w) for w in flat] if int8.AVAILABLE and int8.packable(self.weights) else None
        self._float = [w.astype(np.float32) for w in flat]

    def sums(self, y: np.ndarray, quality: int, rows: np.ndarray, threads: int = 1) -> np.ndarray:
        """Exact integer sums (float32 (N, 2M)) of the quality's taps over y's four neighbours of each flat
        position in ``rows`` (zero outside the image), before the fixed-point multipliers. Only anchor
        values are read when ``rows`` are non-anchors. The product (int8 where the CPU has the kernel, else
        float32, exact either way) is split over ``threads`` threads."""
        h, w, m = y.shape
        stride = w + 2
        padded = np.zeros(((h + 2) * stride, m), np.float32)
        padded.reshape(h + 2, stride, m)[1:-1, 1:-1] = np.clip(y, -128, 127)
        rows = np.asarray(rows, np.int64)
        centre = (rows // w + 1) * stride + rows % w + 1
        offsets = np.array([(r - 1) * stride + c - 1 for r, c in contract.CONTEXT_TAPS])
        gathered = padded[centre[:, None] + offsets]  # (N, TAPS, M)
        gathered = gathered.reshape(len(rows), TAPS * m)
        if self._packed is not None:
            return int8.matmul(gathered, self._packed[quality], True, threads)
        return matmul(gathered, self._float[quality], threads)

    def terms(self, y: np.ndarray, quality: int, rows: np.ndarray,
              threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sums, multipliers, offsets): the context's contribution at ``rows`` for ``finish_at``."""
        return self.sums(y, quality, rows, threads), self.mult[quality], self.offset[quality]

    def correction(self, y: np.ndarray, quality: int, targets: np.ndarray) -> np.ndarray:
        """Fixed-point (N, 2M) corrections for the N positions where ``targets`` (H, W) is True, in raster
        order, from y's values at their four neighbours (zero outside the image)."""
        rows = np.flatnonzero(targets).astype(np.int32)
        return self.sums(y, quality, rows).astype(np.int64) * self.mult[quality] + self.offset[quality]
