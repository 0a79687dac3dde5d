"""Export- and training-time weight rewrites (tools/weights_math.py), checked with plain numpy."""
from __future__ import annotations


import numpy as np

from tools.weights_math import per_quality_rows, space_to_depth_kernel


def conv_same(x: np.ndarray, k: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's 'SAME' convolution (H, W, Cin) * (kh, kw, Cin, Cout), written out directly."""
    h, w, _ = x.shape
    kh, kw = k.shape[:2]
    oh, ow = -(-h // stride), -(-w // stride)
    pad_h = max((oh - 1) * stride + kh - h, 0)
    pad_w = max((ow - 1) * stride + kw - w, 0)
    xp = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = np.zeros((oh, ow, k.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += patch @ k[i, j]
    return out


def space_to_depth(x: np.ndarray, block: int = 2) -> np.ndarray:
    """TensorFlow's depth ordering: channel (a * block + b) * C + c holds pixel (block*i + a, block*j + b, c)."""
    h, w, c = x.shape
    return x.reshape(h // block, block, w // block, block, c).transpose(0, 2, 1, 3, 4).reshape(
        h // block, w // block, block * block * c)


def test_space_to_depth_kernel_gives_the_same_output_as_the_strided_5x5_convolution():
    rng = np.random.default_rng(0)
    for h, w in ((8, 8), (10, 14), (2, 6)):
        x = rng.normal(size=(h, w, 3))
        k = rng.normal(size=(5, 5, 3, 4))
        expected = conv_same(x, k, 2)
        got = conv_same(space_to_depth(x), space_to_depth_kernel(k), 1)
        assert np.allclose(got, expected, atol=1e-9)


def test_space_to_depth_kernel_refuses_other_kernel_sizes():
    import pytest

    with pytest.raises(ValueError, match="5x5"):
        space_to_depth_kernel(np.zeros((3, 3, 3, 4)))


def test_gain_rows_are_copied_for_known_lambdas_and_extrapolated_for_new_ones():
    old_lambdas = [0.001, 0.01, 0.1]
    old = np.log(np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 8.0]]))  # log gain doubles per decade
    new = per_quality_rows(old, old_lambdas, [0.0001, 0.001, 0.01, 0.0316227766, 0.1])
    assert np.array_equal(new[1:3], old[:2]) and np.array_equal(new[4], old[2])
    assert np.allclose(np.exp(new[0]), [0.5, 1.0])  # one decade below: halved
    assert np.allclose(np.exp(new[3]), np.sqrt([8.0, 32.0]))  # half a decade: geometric mean
