"""The float synthesis kernel (_fixedpoint.conv_f32) adds each output's taps in one fixed order of fused
multiply-adds: its AVX-512, AVX2 and portable loops write the same bits, those of the definition in
edgecodec.models.synthesis, and it refuses what it cannot take. No TFLite here: .ci/asan.sh runs this
file under the sanitizers, in the AVX2 and the portable build."""
from __future__ import annotations

import numpy as np
import pytest

from edgecodec.models import _fixedpoint, synthesis

PATHS = (0, 1, 2)  # fastest, portable, AVX2 at most


def layer(rng, c, m, k, relu=False):
    mp = -(-m // synthesis.LANES) * synthesis.LANES
    weights = np.zeros((k * k * c, mp), np.float32)
    weights[:, :m] = rng.normal(0, 0.3, (k * k * c, m))
    bias = np.zeros(mp, np.float32)
    bias[:m] = rng.normal(0, 1, m)
    return synthesis.Op("CONV_2D", [0], 1, weights=weights, bias=bias, kernel=(k, k), outputs=m, relu=relu)


def run(op, x, path, rows=None):
    kh, kw = op.kernel
    padded = np.ascontiguousarray(np.pad(x, (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))))
    out = np.full((*x.shape[:2], op.weights.shape[1]), 999, np.float32)
    first, last = rows or (0, x.shape[0])
    _fixedpoint.conv_f32(padded, op.weights, op.bias, kh, kw, first, last, out, path)
    return out


@pytest.mark.parametrize("c, m, k, h, w", [
    (128, 256, 3, 5, 7), (64, 64, 1, 9, 13), (32, 12, 3, 8, 11), (64, 128, 3, 3, 1), (3, 16, 5, 6, 6),
    (8, 32, 3, 1, 1), (16, 48, 3, 4, 19),
])
def test_every_loop_writes_the_bits_of_the_definition(c, m, k, h, w):
    rng = np.random.default_rng(c + 7 * m + k)
    op = layer(rng, c, m, k)
    x = rng.normal(0, 2, (h, w, c)).astype(np.float32)
    expected = synthesis.conv_reference(op, x)
    for path in PATHS:
        got = run(op, x, path)[..., :m]
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), f"path {path}"
    assert np.array_equal(synthesis.conv(op, x, threads=3), expected)


def test_each_tap_is_one_fused_multiply_add():
    # bias -1 plus (1 + 2^-23)(1 + 2^-22) = 3 * 2^-23 + 2^-45 when the product is not rounded first, and
    # 3 * 2^-23 when it is: a kernel that multiplied and added apart would write the latter.
    eps = 2.0 ** -23
    x = np.array([[[1 + eps]]], np.float32)
    w = np.zeros((1, 16), np.float32)
    w[0, 0] = 1 + 2 * eps
    bias = np.zeros(16, np.float32)
    bias[0] = -1
    op = synthesis.Op("CONV_2D", [0], 1, weights=w, bias=bias, kernel=(1, 1), outputs=1)
    for path in PATHS:
        assert run(op, x, path)[0, 0, 0] == np.float32(3 * eps + 2.0 ** -45) != np.float32(3 * eps)
    assert synthesis.conv_reference(op, x)[0, 0, 0] == np.float32(3 * eps + 2.0 ** -45)


@pytest.mark.parametrize("c", [16, 32, 64])
def test_the_fused_inverse_gdn_has_the_roundings_of_its_four_ops(c):
    rng = np.random.default_rng(c)
    op = layer(rng, c, c, 1)
    op.weights = np.abs(op.weights)
    op.bias = np.abs(op.bias) + np.float32(0.1)
    op.name = "GDN"
    x = rng.normal(0, 2, (5, 7, c)).astype(np.float32)
    expected = synthesis.conv_reference(op, x)
    four = synthesis.Op("CONV_2D", [0], 1, weights=op.weights, bias=op.bias, kernel=(1, 1), outputs=c)
    assert np.array_equal(expected, np.multiply(x, np.sqrt(synthesis.conv_reference(four, np.multiply(x, x)))))
    for path in PATHS:
        padded = np.ascontiguousarray(x)
        out = np.empty((5, 7, c), np.float32)
        _fixedpoint.conv_f32(padded, op.weights, op.bias, 1, 1, 0, 5, out, path, True)
        assert np.array_equal(out.view(np.uint32), expected.view(np.uint32)), f"path {path}"
    with pytest.raises(ValueError, match="GDN"):
        _fixedpoint.conv_f32(np.zeros((3, 3, c), np.float32), np.zeros((9 * c, c), np.float32),
                             np.zeros(c, np.float32), 3, 3, 0, 1, np.zeros((1, 1, c), np.float32), 0, True)


def test_a_gdn_reads_through_depth_to_space_without_the_copy():
    rng = np.random.default_rng(9)
    c, b = 16, 2
    op = layer(rng, c, c, 1)
    op.weights, op.bias, op.name = np.abs(op.weights), np.abs(op.bias) + np.float32(0.1), "GDN"
    x = rng.normal(0, 2, (3, 5, b * b * c)).astype(np.float32)  # before DEPTH_TO_SPACE
    expected = synthesis.conv_reference(op, synthesis.depth_to_space(x, b))
    op.block = b
    assert np.array_equal(synthesis.conv_reference(op, x), expected)
    for path in PATHS:
        out = np.empty((3 * b, 5 * b, c), np.float32)
        _fixedpoint.conv_f32(x, op.weights, op.bias, 1, 1, 0, 3 * b, out, path, True, b)
        assert np.array_equal(out.view(np.uint32), expected.view(np.uint32)), f"path {path}"
    assert np.array_equal(synthesis.conv(op, x, threads=2), expected)
    with pytest.raises(ValueError, match="block"):
        _fixedpoint.conv_f32(x, op.weights, op.bias, 1, 1, 0, 1, np.empty((5, 10, c), np.float32), 0, True, b)


def test_rows_split_over_calls_give_the_whole_result():
    rng = np.random.default_rng(2)
    op = layer(rng, 16, 32, 3)
    x = rng.normal(0, 1, (10, 6, 16)).astype(np.float32)
    whole = run(op, x, 0)
    top, bottom = run(op, x, 0, rows=(0, 3)), run(op, x, 0, rows=(3, 10))
    assert np.array_equal(np.concatenate([top[:3], bottom[3:]]), whole)
    assert (top[3:] == 999).all() and (bottom[:3] == 999).all()


def test_depth_to_space_follows_tflites_channel_order():
    x = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)  # block 2, 2 channels out
    y = synthesis.depth_to_space(x, 2)
    assert y.shape == (4, 6, 2)
    for h in range(2):
        for w in range(3):
            for i in range(2):
                for j in range(2):
                    assert list(y[h * 2 + i, w * 2 + j]) == list(x[h, w, (i * 2 + j) * 2:(i * 2 + j) * 2 + 2])


def test_kernel_refuses_bad_buffers_and_rows():
    rng = np.random.default_rng(1)
    op = layer(rng, 4, 16, 3)
    a = np.zeros((6, 6, 4), np.float32)
    out = np.zeros((4, 4, 16), np.float32)

    def call(a=a, w=op.weights, b=op.bias, kh=3, kw=3, first=0, last=4, o=out):
        _fixedpoint.conv_f32(a, w, b, kh, kw, first, last, o)

    call()
    with pytest.raises(TypeError):
        call(a=a.astype(np.float64))
    with pytest.raises(ValueError, match="cover every tap"):
        call(o=np.zeros((5, 4, 16), np.float32))
    with pytest.raises(ValueError, match="weights"):
        call(w=op.weights[:-1].copy())
    with pytest.raises(ValueError, match="kernel sides"):
        call(kh=0)
    with pytest.raises(ValueError, match="bias"):
        call(b=np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="rows"):
        call(first=3, last=5)
    _fixedpoint.conv_f32(a, op.weights, op.bias, 3, 3, 0, 0, np.zeros((0, 4, 16), np.float32))
