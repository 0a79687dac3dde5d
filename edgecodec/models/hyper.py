"""Integer hyper-synthesis: decoded hyper-latents -> CDF table index (and integer mean) per latent element.

Encoder and decoder must pick the same table for every symbol, or decoding derails. Floating point
cannot promise that across CPUs, thread counts and delegates, so this network runs in integers:
int8 weights and activations, int64 bias and requantization by a fixed-point multiply and arithmetic
shift. The convolutions run on the int8 kernel where the CPU has AVX2 (``int8``), else as a float32
matrix product, which is exact too: every product of two values in [-127, 127] and every partial sum
over at most ``MAX_TAPS`` terms is an integer below 2**24, so no rounding happens whatever order or FMA
use the BLAS picks. Both give the same integers.

Models with a mean head carry ``mean_mult`` (qualities x latent channels): their last layer has twice the
latent channels, the second half being the mean's accumulator, which ``mean_mult[quality]`` (the gain
folded in) requantizes straight to an integer mean in the gained latent's units. The bits shifted out
are the mean's fractional part; with ``mean_steps`` (``contract.MEAN_STEPS``) in the weights it picks,
in integers too, which of the tables centred at -1/2 .. +1/2 codes the latent's residual.

The runtime path (``sums``, ``finish_at``) does the requantization in the C kernel ``_fixedpoint``, one
pass over memory instead of a dozen numpy temporaries; ``predict_fixed`` and ``finish`` spell the same
integer arithmetic out in numpy, and the tests hold the two to each other bit for bit.
"""
from __future__ import annotations

import numpy as np

from edgecodec.errors import ModelError
from edgecodec.models import _fixedpoint, contract, int8
from edgecodec.models.blas import single_threaded

MAX_TAPS = (1 << 24) // (contract.ACT_MAX * contract.ACT_MAX)


def _conv3x3(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact 'same' 3x3 convolution of integer activations (H, W, Cin) with int8 weights (3, 3, Cin, Cout)."""
    h, wd, cin = a.shape
    padded = np.zeros((h + 2, wd + 2, cin), np.float32)
    padded[1:-1, 1:-1] = a
    cols = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))  # (H, W, Cin, 3, 3)
    cols = cols.transpose(0, 1, 3, 4, 2).reshape(h * wd, 9 * cin)
    acc = cols @ w.reshape(9 * cin, -1).astype(np.float32)
    return acc.astype(np.int64).reshape(h, wd, -1)


def _requant(acc: np.ndarray, mult: np.ndarray, offset=0) -> np.ndarray:
    return (acc * mult + offset + (1 << (contract.HYPER_SHIFT - 1))) >> contract.HYPER_SHIFT


def _depth_to_space(a: np.ndarray) -> np.ndarray:
    h, w, c4 = a.shape
    c = c4 // 4
    return a.reshape(h, w, 2, 2, c).transpose(0, 2, 1, 3, 4).reshape(2 * h, 2 * w, c)


class HyperSynthesis:
    """Holds the quantized layers; ``indices`` maps hyper-latent symbols to latent CDF table indices.

    ``convs``, if given, holds one callable per layer computing the exact bias-free convolution of an
    integer (H, W, Cin) array (as float32); otherwise the int8 kernel computes it on ``threads`` threads
    where it runs (``int8``), else the layers ``fallback()`` returns (e.g. TFLite's), else numpy.
    """

    def __init__(self, arrays, convs=None, threads: int = 1, fallback=None):
        try:
            n = sum(1 for k in arrays if k.startswith("w"))
            self.weights = [np.asarray(arrays[f"w{i}"], np.int8) for i in range(n)]
            self.biases = [np.asarray(arrays[f"b{i}"], np.int64) for i in range(n)]
            self.mults = [np.asarray(arrays[f"m{i}"], np.int64) for i in range(n)]
            self.index_offset = np.asarray(arrays["index_offset"], np.int64)
            self.mean_mult = np.asarray(arrays["mean_mult"], np.int64) if "mean_mult" in arrays else None
            self.mean_steps = int(arrays["mean_steps"]) if "mean_steps" in arrays else 0
        except KeyError as exc:
            raise ModelError(f"hyper-synthesis weights lack {exc}") from None
        if not self.weights:
            raise ModelError("hyper-synthesis has no layers")
        if any(m.ndim != 1 for m in self.mults):
            raise ModelError("hyper-synthesis layer shapes are inconsistent")
        self.latent_channels = self.mults[-1].shape[0]
        outputs = [m.shape[0] for m in self.mults]
        if self.mean_mult is not None:
            outputs[-1] *= 2  # scale-index channels, then as many mean channels
        for w, b, n_out in zip(self.weights, self.biases, outputs):
            if w.ndim != 4 or w.shape[:2] != (3, 3) or b.shape != (w.shape[3],) or n_out != w.shape[3]:
                raise ModelError("hyper-synthesis layer shapes are inconsistent")
            if 9 * w.shape[2] > MAX_TAPS or np.abs(w.astype(int)).max() > contract.ACT_MAX:
                raise ModelError("hyper-synthesis layer too wide for exact float32 accumulation")
        self.hyper_channels = self.weights[0].shape[2]
        if self.index_offset.ndim != 2 or self.index_offset.shape[1] != self.latent_channels:
            raise ModelError("hyper-synthesis index offsets do not match its output channels")
        if self.mean_mult is not None and self.mean_mult.shape != self.index_offset.shape:
            raise ModelError("hyper-synthesis mean multipliers do not match its qualities and channels")
        if self.mean_steps and (self.mean_mult is None or self.mean_steps % 2 or not 0 < self.mean_steps <= 64):
            raise ModelError(f"hyper-synthesis mean_steps {self.mean_steps}: needs a mean head and an even "
                             "number of steps up to 64")
        self._half = np.int64(1 << (contract.HYPER_SHIFT - 1))
        self._kernel_params = self._fold_constants()
        self.convs = [self._numpy_conv(w) for w in self.weights]
        self.on_int8 = convs is None and int8.AVAILABLE and all(int8.packable(w) for w in self.weights)
        if self.on_int8:
            convs = [int8.Conv3x3(w, signed=i == 0, threads=threads) for i, w in enumerate(self.weights)]
        elif convs is None and fallback is not None:
            convs = fallback()
        if convs is not None:
            self._check_convs(convs)
            self.convs = list(convs)

    def _fold_constants(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The C kernel's (multiplier, constant) rows, once: per hidden layer (2, C), and per quality for
        the last layer (Q, 3, K), whose third row receives the context's multipliers. Bias, offset and
        rounding half fold into one constant, modulo 2^64 as in the numpy reference."""
        hidden = [np.stack([m, b * m + self._half]) for m, b in zip(self.mults[:-1], self.biases[:-1])]
        m = self.latent_channels
        last = []
        for q in range(self.qualities):
            mult = self.mults[-1] if self.mean_mult is None else np.concatenate([self.mults[-1], self.mean_mult[q]])
            offset = np.zeros_like(mult)
            offset[:m] = self.index_offset[q]
            last.append(np.stack([mult, self.biases[-1] * mult + offset + self._half, np.zeros_like(mult)]))
        return hidden, np.stack(last)

    @staticmethod
    def _numpy_conv(w):
        def conv(a):
            with single_threaded():
                return _conv3x3(a, w)
        return conv

    def _check_convs(self, convs) -> None:
        """Refuse kernels that do not reproduce the numpy convolution exactly on full-range probes."""
        if len(convs) != len(self.weights):
            raise ModelError(f"{len(convs)} hyper-synthesis kernels for {len(self.weights)} layers")
        rng = np.random.default_rng(0)
        for i, (conv, w) in enumerate(zip(convs, self.weights)):
            lo = -contract.ACT_MAX if i == 0 else 0
            probe = rng.integers(lo, contract.ACT_MAX + 1, (5, 7, w.shape[2]))
            probe[0, 0] = contract.ACT_MAX
            if not np.array_equal(np.asarray(conv(probe), np.int64), _conv3x3(probe, w)):
                raise ModelError(f"hyper-synthesis kernel {i} does not match its integer weights")

    @property
    def qualities(self) -> int:
        return self.index_offset.shape[0]

    @property
    def has_mean(self) -> bool:
        return self.mean_mult is not None

    @property
    def tables(self) -> int:
        """How many CDF tables the latents' indices address: scale levels x mean offsets."""
        return contract.SCALE_LEVELS * (self.mean_steps + 1)

    def indices(self, z: np.ndarray, quality: int, shape=None) -> np.ndarray:
        """Table index (int32) per latent, from z symbols (H, W, hyper); (4H, 4W, latent) cropped to ``shape``."""
        return self.predict(z, quality, shape)[0]

    def predict(self, z: np.ndarray, quality: int, shape=None) -> tuple[np.ndarray, np.ndarray]:
        """(table index, integer mean), both int32 (4H, 4W, latent) cropped to ``shape``; means are 0
        for a scale-only model. The coded symbol of a latent is its value minus its mean."""
        sums = self.sums(z, shape)
        h, w = sums.shape[:2]
        idx, mean = self.finish_at(sums, quality, np.arange(h * w, dtype=np.int32))
        return idx.reshape(h, w, -1), mean.reshape(h, w, -1)

    def sums(self, z: np.ndarray, shape=None) -> np.ndarray:
        """The last layer's convolution sums (float32 (4H, 4W, K) cropped to ``shape``, exact integers,
        bias not added; K = latent channels, twice that with a mean head), for ``finish_at``."""
        a = np.clip(z, -contract.ACT_MAX, contract.ACT_MAX).astype(np.float32)
        last = len(self.weights) - 1
        for i, conv in enumerate(self.convs):
            if i == last and shape is not None:
                a = a[:shape[0] + 1, :shape[1] + 1]
            s = np.ascontiguousarray(conv(a), np.float32)
            if i < last:
                h, w, c = s.shape
                a = np.empty_like(s)
                _fixedpoint.requant(s.reshape(h * w, c), self._kernel_params[0][i], contract.HYPER_SHIFT, 0,
                                    contract.ACT_MAX, a.reshape(h * w, c))
                a = _depth_to_space(a)
        if shape is not None:
            s = s[:shape[0], :shape[1]]
        return np.ascontiguousarray(s)

    def finish_at(self, sums: np.ndarray, quality: int, rows: np.ndarray,
                  context: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(table index, mean), int32 (N, latent), of the latents at flat positions ``rows`` (int32) of
        ``sums`` (H, W, K). ``context``, if given, is (context sums (N, K), multipliers (K), offsets (K)),
        whose fixed-point products are added before the final shift (see ``context``)."""
        n, m = len(rows), self.latent_channels
        flat = sums.reshape(-1, sums.shape[-1])
        params = self._kernel_params[1][quality]
        ctx_sums = None
        if context is not None:
            ctx_sums, ctx_mult, ctx_offset = context
            params = params.copy()
            params[1] += ctx_offset
            params[2] = ctx_mult
        idx = np.empty((n, m), np.int32)
        mean = np.empty((n, m), np.int32)
        _fixedpoint.finish(flat, rows, params, ctx_sums, contract.HYPER_SHIFT, contract.SCALE_LEVELS,
                           self.mean_steps, contract.ACT_MAX, idx, mean)
        return idx, mean

    def predict_fixed(self, z: np.ndarray, quality: int, shape=None) -> tuple[np.ndarray, np.ndarray | None]:
        """The numpy reference: the last layer's fixed-point sums (int64, before the final shift) for the
        index and the mean (None for a scale-only model), where the checkerboard context adds its
        corrections; ``finish`` completes them."""
        a = np.clip(z.astype(np.int64), -contract.ACT_MAX, contract.ACT_MAX)
        last = len(self.weights) - 1
        half = 1 << (contract.HYPER_SHIFT - 1)
        for i, (conv, b, m) in enumerate(zip(self.convs, self.biases, self.mults)):
            if i == last and shape is not None:
                a = a[:shape[0] + 1, :shape[1] + 1]
            acc = np.asarray(conv(a), np.int64) + b
            if i == last and shape is not None:
                acc = acc[:shape[0], :shape[1]]
            if i < last:
                a = _depth_to_space(np.clip(_requant(acc, m), 0, contract.ACT_MAX))
        n = self.latent_channels
        index_fx = acc[..., :n] * m + self.index_offset[quality] + half
        mean_fx = None if self.mean_mult is None else acc[..., n:] * self.mean_mult[quality] + half
        return index_fx, mean_fx

    def finish(self, index_fx: np.ndarray, mean_fx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Shift fixed-point sums to (table index, mean), clipped to the table range and to int8.

        ``mean_fx`` already holds the rounding half, so its low bits minus that half are the mean's
        fractional part in [-1/2, 1/2), which ``mean_steps`` rounds to the nearest table centre."""
        shift = contract.HYPER_SHIFT
        idx = np.clip(index_fx >> shift, 0, contract.SCALE_LEVELS - 1)
        if mean_fx is None:
            return idx.astype(np.int32), np.zeros(idx.shape, np.int32)
        mean = np.clip(mean_fx >> shift, -contract.ACT_MAX, contract.ACT_MAX).astype(np.int32)
        if self.mean_steps:
            half = 1 << (shift - 1)
            frac = (mean_fx & ((1 << shift) - 1)) - half
            offset = ((frac * self.mean_steps + half) >> shift) + self.mean_steps // 2
            idx = idx * (self.mean_steps + 1) + offset
        return idx.astype(np.int32), mean
