"""Exact int8 products for the hyper-synthesis and the context, on the AVX2 kernel of ``_fixedpoint``.

Both networks multiply small integers (activations within [-128, 127], int8 weights). Float32 runs them
exactly too, which is how TFLite and the BLAS run them where this kernel is missing (other CPUs, other
compilers); here the int8 instructions do twice the multiplies per instruction. The results are the same
integers either way, so an encoder on one path and a decoder on the other agree bit for bit.
"""
from __future__ import annotations

import os

import numpy as np

from edgecodec.models import _fixedpoint
from edgecodec.models.blas import split_rows

# EDGECODEC_NO_INT8=1 keeps the float32 path on a CPU with AVX2: to compare the two, or to rule the
# kernel out when something looks wrong.
AVAILABLE = bool(_fixedpoint.int8_available()) and os.environ.get("EDGECODEC_NO_INT8", "") in ("", "0")


def packable(w: np.ndarray) -> bool:
    """Whether the kernel takes these (K, M) weights: M a multiple of 16, every weight within +-127."""
    return w.shape[-1] % 16 == 0 and int(np.abs(w.astype(np.int16)).max(initial=0)) <= 127


def pack(w: np.ndarray) -> np.ndarray:
    """(K, M) int8 weights in the kernel's order: (ceil(K/4), M/8, 8, 4), K padded with zero taps."""
    k, m = w.shape
    kb = -(-k // 4)
    padded = np.zeros((4 * kb, m), np.int8)
    padded[:k] = w
    return np.ascontiguousarray(padded.reshape(kb, 4, m // 8, 8).transpose(0, 2, 3, 1))


class Conv3x3:
    """Exact 'same' 3x3 convolution (H, W, C) -> float32 (H, W, M) with int8 weights (3, 3, C, M).
    ``signed``: activations in [-128, 127], else [0, 127] (values outside are clamped)."""

    def __init__(self, w: np.ndarray, signed: bool, threads: int = 1):
        self.packed = pack(np.asarray(w, np.int8).reshape(-1, w.shape[3]))
        self.outputs = w.shape[3]
        self.signed, self.threads = signed, threads

    def __call__(self, a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, np.float32)
        h, w, _ = a.shape
        out = np.empty((h * w, self.outputs), np.float32)
        split_rows(lambda first, last: _fixedpoint.conv3x3_int8(a, self.packed, self.signed, first, last, out),
                   h * w, self.threads)
        return out.reshape(h, w, self.outputs)


def matmul(a: np.ndarray, packed: np.ndarray, signed: bool, threads: int = 1) -> np.ndarray:
    """Exact ``a @ w`` of integer rows a (N, K) with weights ``pack``-ed from (K, M); float32 (N, M)."""
    a = np.ascontiguousarray(a, np.float32)
    out = np.empty((len(a), packed.shape[1] * 8), np.float32)
    split_rows(lambda first, last: _fixedpoint.matmul_int8(a, packed, signed, first, last, out), len(a), threads)
    return out
