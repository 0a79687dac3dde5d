"""The AVX2 int8 products give exactly the integers of the float32/numpy path, clamp what is out of
range, and refuse buffers they could overrun. Runs under the sanitizers too (.ci/asan.sh)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgecodec.models import _fixedpoint, contract, int8
from edgecodec.models.hyper import HyperSynthesis, _conv3x3

pytestmark = pytest.mark.skipif(not int8.AVAILABLE, reason="this CPU has no AVX2: the float32 path is used")


def _activations(rng, shape, signed):
    a = rng.integers(-128 if signed else 0, 128, shape).astype(np.float32)
    a.flat[0] = -128 if signed else 127
    a.flat[-1] = 127
    return a


@pytest.mark.parametrize("h, w, c, m, signed", [(31, 41, 64, 256, False), (8, 10, 64, 256, True),
                                                (5, 7, 3, 16, True), (1, 1, 64, 32, False), (2, 33, 5, 48, False)])
def test_conv3x3_equals_the_numpy_convolution(h, w, c, m, signed):
    rng = np.random.default_rng(h * 100 + c)
    weights = rng.integers(-127, 128, (3, 3, c, m)).astype(np.int8)
    weights.flat[:2] = (-127, 127)
    a = _activations(rng, (h, w, c), signed)
    assert np.array_equal(int8.Conv3x3(weights, signed)(a), _conv3x3(a, weights))


def test_matmul_equals_the_float_product_with_extreme_values():
    rng = np.random.default_rng(3)
    a = _activations(rng, (75, 130), signed=True)  # K not a multiple of 4: padded taps
    w = rng.integers(-127, 128, (130, 32)).astype(np.int8)
    w[0] = -127
    assert np.array_equal(int8.matmul(a, int8.pack(w), True), a @ w.astype(np.float32))


def test_rows_split_over_threads_give_the_same_sums():
    rng = np.random.default_rng(4)
    weights = rng.integers(-127, 128, (3, 3, 64, 256)).astype(np.int8)
    a = _activations(rng, (31, 41, 64), signed=False)
    assert np.array_equal(int8.Conv3x3(weights, False, threads=3)(a), int8.Conv3x3(weights, False)(a))
    w = rng.integers(-127, 128, (512, 256)).astype(np.int8)
    b = _activations(rng, (600, 512), signed=True)
    assert np.array_equal(int8.matmul(b, int8.pack(w), True, threads=2), b @ w.astype(np.float32))


def test_out_of_range_and_non_finite_activations_are_clamped():
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (40, 16)).astype(np.int8)
    a = rng.uniform(-1000, 1000, (9, 40)).astype(np.float32)
    a[0, :4] = a[1, -4:] = (np.nan, np.inf, -np.inf, 3.7)  # through the vector and the scalar conversion
    for signed, lo in ((True, -128), (False, 0)):
        expected = np.clip(np.trunc(np.nan_to_num(a, nan=lo, posinf=127, neginf=lo)), lo, 127)
        assert np.array_equal(int8.matmul(a, int8.pack(w), signed), expected @ w.astype(np.float32))


def test_hyper_synthesis_on_the_kernel_predicts_what_numpy_predicts():
    rng = np.random.default_rng(6)
    hyper, latent, qualities = 16, 32, 2
    arrays = {"index_offset": rng.integers(0, 1 << 20, (qualities, latent)),
              "mean_mult": rng.integers(1, 1 << 12, (qualities, latent)), "mean_steps": np.int64(4)}
    widths = [(hyper, 4 * hyper), (hyper, 4 * hyper), (hyper, 2 * latent)]
    for i, (cin, cout) in enumerate(widths):
        arrays[f"w{i}"] = rng.integers(-127, 128, (3, 3, cin, cout)).astype(np.int8)
        arrays[f"b{i}"] = rng.integers(-5000, 5000, cout)
        arrays[f"m{i}"] = rng.integers(1, 1 << 14, cout if i < 2 else latent)
    on_kernel = HyperSynthesis(arrays)
    assert all(isinstance(conv, int8.Conv3x3) for conv in on_kernel.convs)
    on_numpy = HyperSynthesis(arrays, [HyperSynthesis._numpy_conv(w) for w in on_kernel.weights])
    z = rng.integers(-contract.ACT_MAX, contract.ACT_MAX + 1, (3, 5, hyper))
    for quality in range(qualities):
        for got, expected in zip(on_kernel.predict(z, quality, (11, 19)), on_numpy.predict(z, quality, (11, 19))):
            assert np.array_equal(got, expected)


def test_weights_the_kernel_cannot_take_exactly_are_not_packable():
    assert not int8.packable(np.full((4, 16), -128, np.int8))
    assert not int8.packable(np.zeros((4, 24), np.int8))
    assert int8.packable(np.full((4, 32), -127, np.int8))


def _conv_args(h=4, w=5, c=8, m=16):
    a = np.zeros((h, w, c), np.float32)
    return [a, int8.pack(np.zeros((9 * c, m), np.int8)), False, 0, h * w, np.empty((h * w, m), np.float32)]


@pytest.mark.parametrize("change, error", [
    ({1: np.zeros((17, 2, 8, 4), np.int8)}, ValueError),    # taps for 7 channels, not 8
    ({1: np.zeros((18, 3, 8, 4), np.int8)}, ValueError),    # 24 outputs: not a multiple of 16
    ({1: np.zeros((18, 2, 4, 8), np.int8)}, ValueError),    # not the packed layout
    ({5: np.empty((19, 16), np.float32)}, ValueError),      # out too short
    ({5: np.empty((20, 32), np.float32)}, ValueError),      # out too wide
    ({3: 5, 4: 4}, ValueError),                             # first after last
    ({4: 21}, ValueError),                                  # past the last pixel
    ({3: -1}, ValueError),
    ({0: np.zeros((4, 5, 8), np.float64)}, TypeError),
    ({1: np.zeros((18, 2, 8, 4), np.int16)}, TypeError),
    ({5: np.empty((20, 16), np.float32)[::-1]}, (TypeError, ValueError, BufferError)),
])
def test_bad_buffers_and_ranges_are_refused(change, error):
    args = _conv_args()
    for i, value in change.items():
        args[i] = value
    with pytest.raises(error):
        _fixedpoint.conv3x3_int8(*args)


def test_matmul_refuses_rows_beyond_its_input():
    a = np.zeros((10, 8), np.float32)
    with pytest.raises(ValueError):
        _fixedpoint.matmul_int8(a, int8.pack(np.zeros((8, 16), np.int8)), True, 0, 11,
                                np.empty((10, 16), np.float32))


def test_edgecodec_no_int8_keeps_the_float32_path():
    probe = "from edgecodec.models import int8; print(int8.AVAILABLE)"
    env = {**os.environ, "EDGECODEC_NO_INT8": "1"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_products_with_no_taps_give_zeros():
    out = np.full((5, 16), 7, np.float32)
    _fixedpoint.matmul_int8(np.zeros((5, 0), np.float32), int8.pack(np.zeros((0, 16), np.int8)), True, 0, 5, out)
    assert not out.any()
    conv = np.full((6, 16), 7, np.float32)
    _fixedpoint.conv3x3_int8(np.zeros((2, 3, 0), np.float32), int8.pack(np.zeros((0, 16), np.int8)), False, 0, 6, conv)
    assert not conv.any()
