"""The int8 analysis kernel (_fixedpoint.conv_q8) computes exactly the numpy definition in
edgecodec.models.analysis, on its AVX2 loop and its portable one alike, and refuses what it cannot take.
No TFLite here: .ci/asan.sh runs this file under the sanitizers, in the AVX2 and the portable build."""
from __future__ import annotations

import numpy as np
import pytest

from edgecodec.models import _fixedpoint, analysis


def layer(rng, c, m, stride, zero_out=-128, shift=(-12, -7), extreme=False):
    weights = rng.integers(-128 if extreme else -40, 128 if extreme else 41, (m, 3, 3, c)).astype(np.int8)
    mult = rng.integers(1 << 30, (1 << 31) - 1, m).astype(np.int32)
    conv = analysis.Conv(source=0, target=1, weights=weights,
                         bias=rng.integers(-2**20, 2**20, m).astype(np.int32), multiplier=mult,
                         shift=rng.integers(shift[0], shift[1] + 1, m).astype(np.int32), stride=stride,
                         zero_in=-128, zero_out=zero_out, act_min=-128, act_max=127)
    return conv


PATHS = (0, 1, 2)  # the fastest this CPU has, portable, AVX2 at most


def run(conv, x, path=0, threads=1, rows=None):
    (pt, pb), (pl, pr) = conv.padding(*x.shape[:2])
    padded = np.ascontiguousarray(np.pad(x, ((pt, pb), (pl, pr), (0, 0))), np.int16)
    ho, wo = -(-x.shape[0] // conv.stride), -(-x.shape[1] // conv.stride)
    out = np.full((ho, wo, conv.weights.shape[0]), 999, np.int16)
    params = np.stack([conv.bias, conv.multiplier, conv.shift]).astype(np.int32)
    first, last = rows or (0, ho)
    _fixedpoint.conv_q8(padded, conv.packed, params, conv.stride, conv.zero_out, conv.act_min, conv.act_max,
                        first, last, out, path)
    return out


@pytest.mark.parametrize("c, m, stride, h, w", [
    (12, 48, 1, 9, 13), (48, 48, 2, 10, 14), (48, 64, 2, 7, 5), (64, 128, 2, 6, 6), (16, 24, 2, 11, 3),
    (24, 64, 2, 4, 9), (64, 64, 2, 1, 1), (2, 12, 1, 5, 7), (12, 16, 2, 2, 2), (64, 8, 1, 3, 17),
])
def test_kernel_equals_the_numpy_definition_on_both_loops(c, m, stride, h, w):
    rng = np.random.default_rng(c * 1000 + m + stride)
    conv = layer(rng, c, m, stride)
    x = rng.integers(0, 256, (h, w, c)).astype(np.int16)
    expected = analysis.conv_reference(conv, x)
    for path in PATHS:
        assert np.array_equal(run(conv, x, path), expected), f"path {path}"


def test_kernel_is_exact_at_the_extremes_of_values_multipliers_and_shifts():
    rng = np.random.default_rng(7)
    for zero_out, shift in ((-128, (-31, -1)), (0, (-20, 0)), (37, (0, 2)), (-5, (-8, -8))):
        conv = layer(rng, 64, 32, 2, zero_out=zero_out, shift=shift, extreme=True)
        conv.multiplier[:3] = [2**31 - 1, 1 << 30, 0]
        for x in (np.full((8, 8, 64), 255, np.int16), np.full((8, 8, 64), -255, np.int16),
                  rng.choice(np.array([-255, 0, 255], np.int16), (8, 8, 64))):
            expected = analysis.conv_reference(conv, x)
            for path in PATHS:
                assert np.array_equal(run(conv, x, path), expected), f"path {path}"


def gemmlowp(x: int, mult: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier as gemmlowp and TFLite write it, in Python integers (no left shift)."""
    ab = x * mult
    t = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    high = abs(t) // (1 << 31) * (1 if t >= 0 else -1)  # C++ division: toward zero
    mask = (1 << -shift) - 1
    return (high >> -shift) + ((high & mask) > (mask >> 1) + (high < 0))


def test_requantization_is_gemmlowps_double_rounding_at_every_tie():
    # A 3x3 convolution whose sums are the input values themselves (one unit weight at the centre tap),
    # so that every sum in -255..255 meets the multipliers' ties: 1/2, 1/4 and 3/8 of it.
    x = np.arange(-255, 256, dtype=np.int16).reshape(1, -1, 1).repeat(2, axis=2)
    x[..., 1] = 0
    for mult, shift in ((1 << 30, 0), (1 << 30, -1), (3 << 28, -1), (1 << 30, -4)):
        weights = np.zeros((8, 3, 3, 2), np.int8)
        weights[:, 1, 1, 0] = 1
        conv = analysis.Conv(source=0, target=1, weights=weights, bias=np.zeros(8, np.int32),
                             multiplier=np.full(8, mult, np.int32), shift=np.full(8, shift, np.int32), stride=1,
                             zero_in=-128, zero_out=0, act_min=-128, act_max=127)
        expected = np.clip([gemmlowp(int(v), mult, shift) for v in x[0, :, 0]], -128, 127)
        assert np.array_equal(analysis.conv_reference(conv, x)[0, :, 0], expected)
        for path in PATHS:
            assert np.array_equal(run(conv, x, path)[0, :, 0], expected), f"path {path}"
    assert gemmlowp(5, 1 << 30, -1) == 2 and gemmlowp(-5, 1 << 30, -1) == -1  # 1.25 rounds twice: 2.5, then 1.5


def test_rows_split_over_calls_give_the_whole_result():
    rng = np.random.default_rng(3)
    conv = layer(rng, 48, 64, 2)
    x = rng.integers(0, 256, (20, 12, 48)).astype(np.int16)
    whole = run(conv, x)
    top, bottom = run(conv, x, rows=(0, 4)), run(conv, x, rows=(4, 10))
    assert np.array_equal(np.concatenate([top[:4], bottom[4:]]), whole)
    assert (top[4:] == 999).all() and (bottom[:4] == 999).all()  # nothing written outside the rows asked


def test_threads_change_no_latent():
    rng = np.random.default_rng(5)
    conv = layer(rng, 48, 48, 2)
    x = rng.integers(0, 256, (64, 40, 48)).astype(np.int16)
    assert np.array_equal(analysis.conv_step(conv, x, threads=3), analysis.conv_step(conv, x, threads=1))


def test_quantize_multiplier_matches_tflite_on_its_corner_cases():
    assert analysis.quantize_multiplier(0.0) == (0, 0)
    assert analysis.quantize_multiplier(0.5) == (1 << 30, 0)
    assert analysis.quantize_multiplier(1.0) == (1 << 30, 1)
    q, shift = analysis.quantize_multiplier(1 - 2**-40)  # rounds up to 2^31: halved, shift + 1
    assert (q, shift) == (1 << 30, 1)
    assert analysis.quantize_multiplier(2**-40) == (0, 0)  # below 2^-31 of range: zero, as TFLite
    q, shift = analysis.quantize_multiplier(0.0072279)
    assert 1 << 30 <= q < 1 << 31 and abs(q * 2.0 ** (shift - 31) / 0.0072279 - 1) < 2.0 ** -30


def test_kernel_refuses_bad_buffers_values_and_rows():
    rng = np.random.default_rng(1)
    conv = layer(rng, 12, 16, 1)
    params = np.stack([conv.bias, conv.multiplier, conv.shift]).astype(np.int32)
    a = np.zeros((6, 6, 12), np.int16)
    out = np.zeros((4, 4, 16), np.int16)

    def call(a=a, w=conv.packed, p=params, stride=1, zero=-128, lo=-128, hi=127, first=0, last=4, o=out):
        _fixedpoint.conv_q8(a, w, p, stride, zero, lo, hi, first, last, o)

    call()
    with pytest.raises(TypeError):
        call(a=a.astype(np.int32))
    with pytest.raises((TypeError, ValueError)):
        call(a=a[:, ::2])  # not contiguous
    with pytest.raises(ValueError, match="cover every tap"):
        call(o=np.zeros((5, 4, 16), np.int16))
    with pytest.raises(ValueError, match="stride"):
        call(stride=3)
    with pytest.raises(ValueError, match="rows"):
        call(first=2, last=5)
    with pytest.raises(ValueError, match="rows"):
        call(first=-1)
    with pytest.raises(ValueError, match="activations"):
        call(a=np.full((6, 6, 12), 256, np.int16))
    with pytest.raises(ValueError, match="weights must lie"):
        call(w=np.full_like(conv.packed, 200))
    with pytest.raises(ValueError, match=r"weights \(9C/2"):
        call(w=conv.packed[:-1].copy())
    with pytest.raises(ValueError, match="shifts"):
        bad = params.copy()
        bad[2, 0] = 31
        call(p=bad)
    with pytest.raises(ValueError, match="int8 range"):
        call(zero=128)
    with pytest.raises(ValueError, match="int8 range"):
        call(lo=10, hi=5)
    with pytest.raises(ValueError, match="C even"):
        call(a=np.zeros((6, 6, 11), np.int16))
    empty = np.zeros((0, 4, 16), np.int16)
    _fixedpoint.conv_q8(a, conv.packed, params, 1, -128, -128, 127, 0, 0, empty)  # no rows: nothing to do
