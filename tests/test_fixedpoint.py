"""The C fixed-point kernels give the numpy reference's integers bit for bit, and refuse bad buffers.

No TFLite here (the hyper-synthesis runs its convolutions on the int8 kernel, or numpy without AVX2),
so this file also runs under the sanitizers (.ci/asan.sh)."""
from __future__ import annotations

import numpy as np
import pytest

from edgecodec.models import _fixedpoint, contract
from edgecodec.models.context import TAPS, CheckerboardContext, anchors, passes
from edgecodec.models.hyper import HyperSynthesis

SHIFT = contract.HYPER_SHIFT


def _reference_finish(sums, rows, params, ctx, m, levels=64, steps=8, mean_max=127):
    """The kernel's arithmetic in numpy int64, which wraps modulo 2^64 just as the C code does."""
    s = np.nan_to_num(sums[rows].astype(np.float64), nan=0.0)
    s = np.clip(s, -2.0**40, 2.0**40).astype(np.int64)
    with np.errstate(over="ignore"):
        fx = s * params[0] + params[1]
        if ctx is not None:
            c = np.clip(np.nan_to_num(ctx.astype(np.float64), nan=0.0), -2.0**40, 2.0**40).astype(np.int64)
            fx = fx + c * params[2]
    index = np.clip(fx[:, :m] >> SHIFT, 0, levels - 1)
    if fx.shape[1] == m:
        return index, np.zeros_like(index)
    mean_fx = fx[:, m:]
    mean = np.clip(mean_fx >> SHIFT, -mean_max, mean_max)
    if steps:
        half = 1 << (SHIFT - 1)
        frac = (mean_fx & ((1 << SHIFT) - 1)) - half
        index = index * (steps + 1) + ((frac * steps + half) >> SHIFT) + steps // 2
    return index, mean


def _run_finish(sums, rows, params, ctx, levels=64, steps=8, mean_max=127, m=None):
    m = m or params.shape[1] // 2
    idx, mean = np.empty((len(rows), m), np.int32), np.empty((len(rows), m), np.int32)
    _fixedpoint.finish(sums, rows, params, ctx, SHIFT, levels, steps, mean_max, idx, mean)
    return idx, mean


def _hyper_arrays(rng, qualities=2, latent=6, hyper=5, mean=True):
    """A tiny random hyper-synthesis: widths hyper -> 4*2 -> 4*2 -> latent (twice that with a mean head)."""
    arrays = {}
    widths = [(hyper, 8), (2, 8), (2, 2 * latent if mean else latent)]
    for i, (cin, cout) in enumerate(widths):
        arrays[f"w{i}"] = rng.integers(-127, 128, (3, 3, cin, cout)).astype(np.int8)
        arrays[f"b{i}"] = rng.integers(-500, 500, cout)
        arrays[f"m{i}"] = rng.integers(1 << 16, 1 << 18, cout if i < 2 else latent)
    arrays["index_offset"] = rng.integers(-(1 << 26), 1 << 26, (qualities, latent))
    if mean:
        arrays["mean_mult"] = rng.integers(1 << 13, 1 << 16, (qualities, latent))
        arrays["mean_steps"] = np.array(contract.MEAN_STEPS)
    return arrays


def _hyper(rng):
    return HyperSynthesis(_hyper_arrays(rng))


def _context(rng, hyper):
    q, m = hyper.qualities, hyper.latent_channels
    arrays = {
        "ctx_w": rng.integers(-127, 128, (q, TAPS, m, 2 * m)).astype(np.int8),
        "ctx_mult": rng.integers(200, 800, (q, 2 * m)),
        "ctx_offset": rng.integers(-(1 << 23), 1 << 23, (q, 2 * m)),
    }
    return CheckerboardContext(arrays, m, q)


def test_runtime_tables_equal_the_numpy_reference_for_every_quality():
    rng = np.random.default_rng(21)
    hyper = _hyper(rng)
    z = rng.integers(-40, 41, (5, 7, hyper.hyper_channels))
    seen = set()
    for quality in range(hyper.qualities):
        for shape in [None, (17, 26), (1, 1)]:
            expected = hyper.finish(*hyper.predict_fixed(z, quality, shape))
            got = hyper.predict(z, quality, shape)
            assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
            seen.update(np.unique(expected[0]).tolist())
    assert len(seen) > 50  # the comparison covered many tables and offsets, not a few


def test_context_terms_give_the_reference_corrections_bit_for_bit():
    rng = np.random.default_rng(22)
    hyper = _hyper(rng)
    ctx = _context(rng, hyper)
    z = rng.integers(-40, 41, (3, 4, hyper.hyper_channels))
    y = rng.integers(-128, 128, (11, 13, hyper.latent_channels))
    m = hyper.latent_channels
    for quality in range(hyper.qualities):
        index_fx, mean_fx = hyper.predict_fixed(z, quality, y.shape[:2])
        sums = hyper.sums(z, y.shape[:2])
        for rows, targets in zip(passes(*y.shape[:2]), (anchors(*y.shape[:2]), ~anchors(*y.shape[:2]))):
            correction = ctx.correction(y, quality, targets)
            expected = hyper.finish(index_fx[targets] + correction[:, :m], mean_fx[targets] + correction[:, m:])
            got = hyper.finish_at(sums, quality, rows, ctx.terms(y, quality, rows))
            assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_scale_only_model_gets_zero_means_from_the_kernel():
    rng = np.random.default_rng(23)
    hyper = HyperSynthesis(_hyper_arrays(rng, mean=False))
    z = rng.integers(-30, 31, (4, 4, hyper.hyper_channels))
    idx, mean = hyper.predict(z, 1)
    assert np.array_equal(idx, hyper.finish(*hyper.predict_fixed(z, 1))[0])
    assert not mean.any()


@pytest.mark.parametrize("seed", range(4))
def test_kernel_wraps_like_int64_for_any_constants(seed):
    """Constants from a hostile model overflow 64 bits; the kernel must neither crash nor differ."""
    rng = np.random.default_rng(seed)
    n, m = 50, 7
    info = np.iinfo(np.int64)
    params = rng.integers(info.min, info.max, (3, 2 * m), dtype=np.int64)
    sums = rng.integers(-(1 << 24), 1 << 24, (n + 3, 2 * m)).astype(np.float32)
    ctx = rng.integers(-(1 << 24), 1 << 24, (n, 2 * m)).astype(np.float32)
    rows = rng.integers(0, n + 3, n).astype(np.int32)
    for context in (None, ctx):
        got = _run_finish(sums, rows, params, context)
        expected = _reference_finish(sums, rows, params, context, m)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("steps, mean, with_ctx", [(8, True, True), (8, True, False), (0, True, True),
                                                   (0, False, False)])
def test_vector_path_agrees_with_the_reference_and_leaves_unfit_sums_to_the_scalar_one(steps, mean, with_ctx):
    """Multipliers at the ends of int32 take AVX2's 32-bit products; NaN, infinities and sums of 2^31 and
    beyond send their group of four latents down the scalar path. Both must give the reference's integers."""
    rng = np.random.default_rng(40 + steps + 2 * mean + 4 * with_ctx)
    n, m = 40, 16
    k = 2 * m if mean else m
    lim = 1 << 31
    info = np.iinfo(np.int64)
    params = np.stack([rng.integers(-lim, lim, k), rng.integers(info.min, info.max, k, dtype=np.int64),
                       rng.integers(-lim, lim, k)]).astype(np.int64)
    params[0, :2] = params[2, :2] = (-lim, lim - 1)
    sums = rng.integers(-(1 << 24), 1 << 24, (n, k)).astype(np.float32)
    sums[3, 5], sums[4, 0], sums[5, k - 2], sums[6, 7] = np.nan, 3e9, -np.inf, 2.0**31
    sums[7, 1] = -(2.0**31) + 128  # the float32 nearest -2^31 that the vector path still takes
    ctx = rng.integers(-(1 << 24), 1 << 24, (n, k)).astype(np.float32)
    ctx[8, 2] = np.nan
    rows = rng.integers(0, n, n).astype(np.int32)
    rows[:8] = np.arange(8)
    context = ctx if with_ctx else None
    got = _run_finish(sums, rows, params, context, steps=steps, m=m)
    expected = _reference_finish(sums, rows, params, context, m, steps=steps)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_kernel_clamps_non_finite_and_huge_sums():
    params = np.array([[1] * 4, [0] * 4, [0] * 4], np.int64)
    sums = np.array([[np.nan, np.inf, -np.inf, 3e30]], np.float32)
    idx, mean = _run_finish(sums, np.array([0], np.int32), params, None, levels=1 << 20, steps=0, mean_max=1 << 20,
                            m=2)
    assert idx.tolist() == [[0, 1 << 16]]  # nan -> 0; +inf -> 2^40, and 2^40 >> 24 = 2^16
    assert mean.tolist() == [[-(1 << 16), 1 << 16]]


def test_requant_matches_the_reference_and_clips():
    rng = np.random.default_rng(3)
    sums = rng.integers(-(1 << 20), 1 << 20, (30, 5)).astype(np.float32)
    params = np.stack([rng.integers(1, 1 << 16, 5), rng.integers(-(1 << 30), 1 << 30, 5)])
    out = np.empty_like(sums)
    _fixedpoint.requant(sums, params, SHIFT, 0, 127, out)
    expected = np.clip((sums.astype(np.int64) * params[0] + params[1]) >> SHIFT, 0, 127)
    assert np.array_equal(out, expected) and 0 < (out == 127).mean() < 1


def test_rows_outside_the_sums_are_refused():
    sums = np.zeros((4, 2), np.float32)
    params = np.zeros((3, 2), np.int64)
    for bad in (4, -1, 1 << 30):
        with pytest.raises(IndexError, match="outside 0..3"):
            _run_finish(sums, np.array([0, bad], np.int32), params, None, m=1)


@pytest.mark.parametrize("change, error", [
    (dict(sums=np.zeros((4, 2), np.float64)), TypeError),
    (dict(sums=np.zeros((2, 4), np.float32)[:, ::2]), (TypeError, ValueError, BufferError)),
    (dict(rows=np.zeros(2, np.int64)), TypeError),
    (dict(params=np.zeros((2, 2), np.int64)), ValueError),
    (dict(params=np.zeros((3, 2), np.int32)), TypeError),
    (dict(ctx=np.zeros((3, 2), np.float32)), ValueError),
    (dict(index=np.zeros((3, 1), np.int32)), ValueError),
    (dict(mean=np.zeros((2, 1), np.int32, order="C")[:1]), ValueError),
    (dict(index=np.zeros((2, 1), np.int32).copy(), readonly=True), (TypeError, ValueError, BufferError)),
    (dict(shift=0), ValueError),
    (dict(shift=63), ValueError),
    (dict(levels=0), ValueError),
    (dict(levels=1 << 30), ValueError),
    (dict(steps=3), ValueError),
    (dict(steps=66), ValueError),
])
def test_bad_buffers_and_settings_are_refused(change, error):
    args = dict(sums=np.zeros((4, 2), np.float32), rows=np.zeros(2, np.int32), params=np.zeros((3, 2), np.int64),
                ctx=None, shift=SHIFT, levels=64, steps=0, mean_max=127,
                index=np.zeros((2, 1), np.int32), mean=np.zeros((2, 1), np.int32))
    readonly = change.pop("readonly", False)
    args.update(change)
    if readonly:
        args["index"].flags.writeable = False
    with pytest.raises(error):
        _fixedpoint.finish(args["sums"], args["rows"], args["params"], args["ctx"], args["shift"], args["levels"],
                           args["steps"], args["mean_max"], args["index"], args["mean"])


def test_requant_refuses_mismatched_buffers():
    sums = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError):
        _fixedpoint.requant(sums, np.zeros((2, 3), np.int64), SHIFT, 0, 127, np.empty_like(sums))
    with pytest.raises(ValueError):
        _fixedpoint.requant(sums, np.zeros((2, 4), np.int64), SHIFT, 0, 127, np.empty((4, 3), np.float32))
    with pytest.raises(ValueError):
        _fixedpoint.requant(sums, np.zeros((2, 4), np.int64), SHIFT, 5, 1, np.empty_like(sums))
