"""Numpy-only rewrites of trained weights, shared by training and export (and testable without TensorFlow)."""
from __future__ import annotations

import math

import numpy as np


def per_quality_rows(old: np.ndarray, old_lambdas, new_lambdas) -> np.ndarray:
    """Rows of a per-quality table (gains) for new lambdas: copied where the lambda existed, else
    interpolated or extrapolated linearly in log(lambda) from the two nearest old rows."""
    x = np.log(np.asarray(old_lambdas, np.float64))
    rows = []
    for lam in new_lambdas:
        if lam in old_lambdas:
            rows.append(old[list(old_lambdas).index(lam)])
            continue
        t = math.log(lam)
        i = int(np.clip(np.searchsorted(x, t) - 1, 0, len(x) - 2))
        w = (t - x[i]) / (x[i + 1] - x[i])
        rows.append(old[i] + w * (old[i + 1] - old[i]))
    return np.stack(rows).astype(old.dtype)


def space_to_depth_kernel(kernel: np.ndarray) -> np.ndarray:
    """Rewrite a 5x5 stride-2 kernel as the 3x3 stride-1 kernel that gives the same output on
    ``space_to_depth(x, 2)`` of an even-sized input.

    TFLite's int8 convolution runs a 3-channel 5x5/2 layer at a third of its usual speed (measured
    16 ms of the 24 ms encoder at 640x480); on 12 channels at half resolution the same sums take 11 ms.
    SAME padding on an even input puts one zero row before and two after, so output row p reads input
    rows 2p-1 .. 2p+3, i.e. block rows p-1 (odd row only), p and p+1 of the space-to-depth input.
    """
    k, _, cin, cout = kernel.shape
    if k != 5:
        raise ValueError(f"space_to_depth_kernel expects a 5x5 kernel, got {k}x{k}")
    out = np.zeros((3, 3, 4 * cin, cout), kernel.dtype)
    for u in range(3):
        for a in range(2):
            dy = 2 * u + a - 1
            for v in range(3):
                for b in range(2):
                    dx = 2 * v + b - 1
                    if 0 <= dy < 5 and 0 <= dx < 5:
                        ch = (a * 2 + b) * cin
                        out[u, v, ch:ch + cin] = kernel[dy, dx]
    return out
