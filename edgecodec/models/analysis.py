"""The int8 analysis (encoder) run as exact integer arithmetic of our own, the same on every CPU.

LiteRT's int8 kernels do not agree with each other: XNNPACK's requantization differs from TFLite's
reference kernels in about 0.6 % of the latents (by one), its ARM and x86 microkernels differ from each
other, and so do TFLite's own optimized and reference kernels (measured 2026-12-07 on Kodak at 640x480).
An ARM camera and an x86 desktop then write different bytes for the same frame. Here the encoder's
convolutions are integer sums, and the requantization is TFLite's reference one (gemmlowp's fixed-point
``MultiplyByQuantizedMultiplier``), written out in C (``_fixedpoint.conv_q8``) without a float step, so
every CPU and every build computes the same latents; they are those of TFLite's reference kernels,
which the model load checks on a probe image.

The network is read from the folder's int8 ``.tflite`` file itself (its weights, scales and shapes), so
the model folder's contract does not change. What is supported is what ``tools/export.py`` writes:
QUANTIZE of the uint8 image, SPACE_TO_DEPTH, and 3x3 CONV_2D with per-channel int8 weights, stride 1 or 2
and 'same' padding. Anything else raises ``Unsupported`` and the caller keeps LiteRT.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from edgecodec.models import _fixedpoint
from edgecodec.models.blas import split_rows

log = logging.getLogger(__name__)


class Unsupported(ValueError):
    """The .tflite graph has an op or a layout outside what this module runs."""


# A probe size for reading the graph's shapes: a multiple of 64 in both directions, and not square, so
# that each convolution's stride shows in its output shape.
_PROBE = (1, 128, 192, 3)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: real = q * 2^(shift - 31) with q in [2^30, 2^31), in float64 and
    round-half-away-from-zero, as the C++ does, so the same on every CPU."""
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(real)
    q = int(math.floor(abs(frac) * (1 << 31) + 0.5)) * (1 if frac > 0 else -1)
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


@dataclass
class Conv:
    """One 3x3 int8 convolution: weights (M, 3, 3, C), int32 bias, per-channel fixed-point multipliers."""
    source: int            # tensor index of the input
    target: int            # tensor index of the output
    weights: np.ndarray    # int8 (M, 3, 3, C)
    bias: np.ndarray       # int32 (M,)
    multiplier: np.ndarray  # int32 (M,)
    shift: np.ndarray      # int32 (M,)
    stride: int
    zero_in: int
    zero_out: int
    act_min: int
    act_max: int
    packed: np.ndarray | None = None  # int16 (9C/2, M, 2), the kernel's order
    params: np.ndarray | None = None  # int32 (3, M): bias, multiplier, shift, as the kernel takes them

    def __post_init__(self):
        self.packed = pack(self.weights) if self.packed is None else self.packed
        self.params = np.ascontiguousarray(np.stack([self.bias, self.multiplier, self.shift]), np.int32)

    def padding(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """TensorFlow's 'same' padding of an (h, w) input: the odd pixel goes after."""
        def one(n):
            total = max((-(-n // self.stride) - 1) * self.stride + 3 - n, 0)
            return total // 2, total - total // 2
        return one(h), one(w)


def pack(weights: np.ndarray) -> np.ndarray:
    """(M, 3, 3, C) int8 weights as the kernel reads them: int16 (9C/2, M, 2), taps in (dy, dx, c) order
    taken two at a time, so that one 16-lane load holds eight output channels' pair of taps."""
    m = weights.shape[0]
    taps = weights.reshape(m, -1).T.astype(np.int16)  # (9C, M)
    return np.ascontiguousarray(taps.reshape(-1, 2, m).transpose(0, 2, 1))


class Graph:
    """The int8 encoder of one .tflite file, as plain arrays: the space-to-depth block, the
    convolutions in order and the output tensors."""

    def __init__(self, path):
        from edgecodec.models.interpreter import reference_interpreter  # LiteRT only at load

        interp = reference_interpreter(path)
        (inp,) = interp.get_input_details()
        try:
            interp.resize_tensor_input(inp["index"], _PROBE, strict=False)
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise Unsupported(f"{path}: cannot be prepared for a {_PROBE[2]}x{_PROBE[1]} image "
                              f"({str(exc).splitlines()[0]})") from None
        tensors = {t["index"]: t for t in interp.get_tensor_details()}

        def quant(index):
            q = tensors[index]["quantization_parameters"]
            return np.asarray(q["scales"], np.float64), np.asarray(q["zero_points"], np.int64)

        if inp["dtype"] != np.uint8 or tuple(inp["quantization"]) not in ((1.0, 0), (0.0, 0)):
            raise Unsupported(f"{path}: input is not a plain uint8 image")
        self.path = str(path)
        self.input = inp["index"]
        self.block = 1           # space-to-depth block
        self.convs: list[Conv] = []
        current = self.input
        zero = {self.input: 0}
        for op in interp._get_ops_details():
            name, ins, outs = op["op_name"], [i for i in op["inputs"] if i >= 0], op["outputs"]
            if name == "QUANTIZE" and ins == [current] and not self.convs:
                (s_out,), (z_out,) = quant(outs[0])
                if s_out != 1.0:
                    raise Unsupported(f"{path}: the input QUANTIZE rescales")
                current = outs[0]
                zero[current] = int(z_out)
            elif name == "SPACE_TO_DEPTH" and ins == [current] and not self.convs and self.block == 1:
                self.block = int(tensors[ins[0]]["shape"][1] // tensors[outs[0]]["shape"][1])
                current = outs[0]
                zero[current] = zero[ins[0]]
            elif name == "CONV_2D" and len(ins) == 3 and ins[0] in zero:
                self.convs.append(self._conv(interp, tensors, quant, ins, outs[0], zero[ins[0]]))
                zero[outs[0]] = self.convs[-1].zero_out
            else:
                raise Unsupported(f"{path}: {name} is not an op of the int8 analysis")
        first = self.convs[0].source if self.convs else None
        if first is None or first != current:
            raise Unsupported(f"{path}: no convolution reads the image")
        if zero[current] != -128:  # then the int8 image minus its zero point is the uint8 image itself
            raise Unsupported(f"{path}: the image is not shifted to zero point -128")
        self.outputs = [d["index"] for d in interp.get_output_details()]
        for index in self.outputs:
            scale, zp = quant(index)
            if not (len(scale) == 1 and scale[0] == 1.0 and zp[0] == 0):
                raise Unsupported(f"{path}: output {index} is not an integer latent (scale 1, zero point 0)")

    @staticmethod
    def _conv(interp, tensors, quant, ins, out, zero_in) -> Conv:
        x, w, b = ins
        weights = interp.get_tensor(w)
        if weights.dtype != np.int8 or weights.ndim != 4 or weights.shape[1:3] != (3, 3) or weights.shape[3] % 2:
            raise Unsupported("a convolution is not 3x3 int8 over an even number of channels")
        s_w, z_w = quant(w)
        (s_in,), _ = quant(x)
        (s_out,), (z_out,) = quant(out)
        if np.any(z_w != 0) or len(s_w) != weights.shape[0]:
            raise Unsupported("a convolution's weights are not symmetric per-channel int8")
        h_in, w_in = tensors[x]["shape"][1:3]
        h_out, w_out = tensors[out]["shape"][1:3]
        stride = h_in // h_out if h_out else 0
        if stride not in (1, 2) or (h_out, w_out) != (-(-h_in // stride), -(-w_in // stride)):
            raise Unsupported("a convolution is not stride 1 or 2 with 'same' padding")
        pairs = [quantize_multiplier(float(np.float64(s_in) * np.float64(sw) / np.float64(s_out))) for sw in s_w]
        bias = interp.get_tensor(b)
        if bias.dtype != np.int32:
            raise Unsupported("a convolution's bias is not int32")
        # Hidden layers end in ReLU, whose clamp at the zero point is the int8 range's own at the zero point
        # -128 they have; outputs are signed latents. The fused activation is not in the op details, so a
        # graph that needs another clamp shows up in the load's check against TFLite's reference kernels.
        act_min = -128
        conv = Conv(source=x, target=out, weights=weights, bias=bias.astype(np.int32),
                    multiplier=np.array([p[0] for p in pairs], np.int32),
                    shift=np.array([p[1] for p in pairs], np.int32), stride=stride, zero_in=int(zero_in),
                    zero_out=int(z_out), act_min=act_min, act_max=127)
        return conv


def image_values(graph: Graph, image: np.ndarray) -> np.ndarray:
    """The first convolution's input, (H/b, W/b, 3b^2) int16 offset values (the int8 value minus the zero
    point), of a (1, H, W, 3) uint8 image: the image itself, space-to-depth."""
    _, h, w, c = image.shape
    b = graph.block
    x = image[0].astype(np.int16)
    if b > 1:
        x = x.reshape(h // b, b, w // b, b, c).transpose(0, 2, 1, 3, 4).reshape(h // b, w // b, b * b * c)
    return np.ascontiguousarray(x)


def conv_step(conv: Conv, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """One layer on the C kernel: (H, W, C) int16 offset values -> (Ho, Wo, M) int16 offset values (the
    int8 result minus the layer's output zero point)."""
    (pt, pb), (pl, pr) = conv.padding(*x.shape[:2])
    padded = np.zeros((x.shape[0] + pt + pb, x.shape[1] + pl + pr, x.shape[2]), np.int16)
    padded[pt:pt + x.shape[0], pl:pl + x.shape[1]] = x
    ho, wo = -(-x.shape[0] // conv.stride), -(-x.shape[1] // conv.stride)
    out = np.empty((ho, wo, conv.weights.shape[0]), np.int16)
    split_rows(lambda first, last: _fixedpoint.conv_q8(padded, conv.packed, conv.params, conv.stride, conv.zero_out,
                                                       conv.act_min, conv.act_max, first, last, out),
               ho, threads, min_rows=2)
    return out


def conv_reference(conv: Conv, x: np.ndarray) -> np.ndarray:
    """``conv_step`` in numpy int64: the definition the kernel is held to (slow; for tests)."""
    (pt, pb), (pl, pr) = conv.padding(*x.shape[:2])
    p = np.pad(x.astype(np.int64), ((pt, pb), (pl, pr), (0, 0)))
    s, m = conv.stride, conv.weights.shape[0]
    ho, wo = -(-x.shape[0] // s), -(-x.shape[1] // s)
    acc = np.zeros((ho, wo, m), np.int64)
    w = conv.weights.astype(np.int64)
    for dy in range(3):
        for dx in range(3):
            patch = p[dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s]
            acc += patch @ w[:, dy, dx, :].T
    acc += conv.bias
    v = requantize_reference(acc, conv.multiplier.astype(np.int64), conv.shift.astype(np.int64))
    return (np.clip(v + conv.zero_out, conv.act_min, conv.act_max) - conv.zero_out).astype(np.int16)


def requantize_reference(acc, mult, shift):
    """gemmlowp's MultiplyByQuantizedMultiplier on int64 arrays: a rounding doubling high multiply by
    ``mult`` after a left shift, then a rounding right shift (ties away from zero, as TFLite's)."""
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    a = np.clip(acc * (np.int64(1) << left), -2**31, 2**31 - 1)  # TFLite wraps on overflow; never reached
    ab = a * mult
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = (ab + nudge)
    high = np.where(high >= 0, high >> 31, -((-high) >> 31))  # C++ division truncates toward zero
    mask = (np.int64(1) << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


class ExactAnalysis:
    """``TFLiteModel``'s interface (``run``, ``output_names``, ``delegate``, ``path``) over a ``Graph`` run
    on the integer kernel: one (1, H, W, 3) uint8 image in, the outputs as int32 (1, h, w, M) latents in
    the .tflite file's output order."""

    delegate = None

    def __init__(self, graph: Graph, threads: int = 2):
        self.graph, self.threads, self.path = graph, threads, graph.path

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        image = np.asarray(array)
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[3] != 3 or image.dtype != np.uint8:
            raise ValueError("the int8 analysis takes one (1, H, W, 3) uint8 image")
        if image.shape[1] % self.graph.block or image.shape[2] % self.graph.block:
            raise ValueError(f"the image's sides must be multiples of {self.graph.block}")
        values = {self.graph.convs[0].source: image_values(self.graph, image)}
        for conv in self.graph.convs:
            values[conv.target] = conv_step(conv, values[conv.source], self.threads)
        return [values[i][None].astype(np.int32) for i in self.graph.outputs]

    def output_names(self) -> list[str]:
        return [str(i) for i in self.graph.outputs]


# EDGECODEC_LITERT_INT8=1 runs the int8 analysis on LiteRT's kernels instead (XNNPACK: several times
# faster where it has int8 dot-product kernels, but its bytes depend on the CPU).
ENABLED = os.environ.get("EDGECODEC_LITERT_INT8", "") in ("", "0")
_PROBE_CHECK = (1, 64, 96, 3)


def check_against_reference(model: ExactAnalysis) -> bool:
    """Whether the kernel computes TFLite's reference-kernel latents on a probe image (a smooth gradient
    with texture, so that every layer's activations vary)."""
    from edgecodec.models.interpreter import reference_interpreter

    h, w = _PROBE_CHECK[1:3]
    yy, xx = np.mgrid[0:h, 0:w]
    probe = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx * 7 + yy * 13) % 256)], -1).astype(np.uint8)[None]
    ref = reference_interpreter(model.path)
    (inp,) = ref.get_input_details()
    ref.resize_tensor_input(inp["index"], probe.shape, strict=False)
    ref.allocate_tensors()
    ref.set_tensor(inp["index"], probe)
    ref.invoke()
    expected = [ref.get_tensor(i).astype(np.int32) for i in model.graph.outputs]
    return all(np.array_equal(a, b) for a, b in zip(model.run(probe), expected))


def load(path, threads: int = 2):
    """The int8 analysis in ``path`` on this module's kernel, checked against TFLite's reference kernels;
    LiteRT's own kernels (a ``TFLiteModel``) with one warning where the graph is not one it runs or the
    check fails, or when EDGECODEC_LITERT_INT8=1 asks for them."""
    from edgecodec.models.interpreter import TFLiteModel

    if ENABLED:
        try:
            model = ExactAnalysis(Graph(path), threads)
            if check_against_reference(model):
                return model
            reason = "its latents differ from TFLite's reference kernels on a probe image"
        except ValueError as exc:  # Unsupported, or a graph whose details do not unpack as expected
            reason = str(exc)
        log.warning("int8 analysis %s on LiteRT's kernels (bytes may depend on the CPU): %s", path, reason)
    return TFLiteModel(path, threads)
