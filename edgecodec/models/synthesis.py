"""The float synthesis (decoder) run in one fixed order of IEEE-754 float32 operations, the same on every CPU.

LiteRT's float kernels pick their summation order and their use of fused multiply-adds per CPU (XNNPACK's
microkernels differ between ARM and x86, and between x86 generations), so the same latents decoded on an
ARM board and on an x86 desktop came out with pixels one apart in 42 of 48 cases of the emulated check of
2026-12-04. Here every convolution output is its bias plus its taps' products added in (dy, dx, c) order,
each addition one fused multiply-add (``_fixedpoint.conv_f32``), and every other op is one correctly
rounded IEEE operation per element in numpy (square, square root, product, sum, minimum, maximum), or the
same operations fused into the kernel's pass (an inverse GDN); IEEE 754 defines each result exactly, so
any CPU computes the same bits, and the same pixels.

The network is read from the folder's float ``.tflite`` file (ops, options and constants), so the model
contract does not change. Supported: what ``tools/export.py`` and ``tools/export_v2.py`` write for a
synthesis: stride-1 'same' CONV_2D (fused ReLU or none), DEPTH_TO_SPACE, SQUARE, SQRT, MUL, ADD,
MINIMUM, MAXIMUM and RELU. Anything else raises ``Unsupported`` and the caller keeps LiteRT.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from edgecodec.models import _fixedpoint
from edgecodec.models.analysis import Unsupported
from edgecodec.models.blas import split_rows

log = logging.getLogger(__name__)

# EDGECODEC_LITERT_SYNTHESIS=1 runs the synthesis on LiteRT's kernels instead (XNNPACK: faster on some
# CPUs, but the last bit of a pixel may then depend on the CPU).
ENABLED = os.environ.get("EDGECODEC_LITERT_SYNTHESIS", "") in ("", "0")
LANES = 16  # output channels per AVX-512 vector: convolutions are padded to a multiple


@dataclass
class Op:
    name: str
    inputs: list          # tensor indices (graph tensors) or constant arrays
    output: int
    weights: np.ndarray | None = None   # CONV_2D: float32 (kh * kw * C, M padded to LANES)
    bias: np.ndarray | None = None
    kernel: tuple = (1, 1)
    outputs: int = 0      # CONV_2D: the real M
    relu: bool = False
    block: int = 0        # DEPTH_TO_SPACE; GDN: > 1 when it reads through a DEPTH_TO_SPACE of this block
    extra: dict = field(default_factory=dict)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tflite_runtime import schema_py_generated as schema  # noqa: F401 - not in every build
        except ImportError:
            raise Unsupported("no TFLite flatbuffer schema in this LiteRT install") from None
    return schema


class Graph:
    """The synthesis of one float .tflite file as a list of ``Op`` on tensor indices."""

    def __init__(self, path):
        from edgecodec.models.interpreter import reference_interpreter

        schema = _schema()
        self.path = str(path)
        with open(path, "rb") as f:
            buf = f.read()
        model = schema.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() != 1:
            raise Unsupported(f"{path}: more than one subgraph")
        sub = model.Subgraphs(0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        acts = schema.ActivationFunctionType
        interp = reference_interpreter(path)
        try:
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise Unsupported(f"{path}: cannot be prepared at its default shape ({str(exc).splitlines()[0]})") from None
        (self.input,) = [int(i) for i in sub.InputsAsNumpy()]
        self.outputs = [int(i) for i in sub.OutputsAsNumpy()]
        dynamic = {self.input}
        self.ops: list[Op] = []

        def operand(i):
            i = int(i)
            return i if i in dynamic else np.asarray(interp.get_tensor(i), np.float32)

        for k in range(sub.OperatorsLength()):
            op = sub.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            ins, (out,) = [int(i) for i in op.InputsAsNumpy() if i >= 0], [int(i) for i in op.OutputsAsNumpy()]
            if sub.Tensors(out).Type() != schema.TensorType.FLOAT32:
                raise Unsupported(f"{path}: {name} has a non-float output")
            if name == "CONV_2D":
                opts = schema.Conv2DOptions()
                table = op.BuiltinOptions()
                opts.Init(table.Bytes, table.Pos)
                if (opts.StrideH(), opts.StrideW(), opts.DilationHFactor(), opts.DilationWFactor()) != (1, 1, 1, 1) \
                        or opts.Padding() != schema.Padding.SAME \
                        or opts.FusedActivationFunction() not in (acts.NONE, acts.RELU) or len(ins) != 3:
                    raise Unsupported(f"{path}: a CONV_2D other than stride-1 'same' with ReLU or nothing")
                w = np.asarray(interp.get_tensor(ins[1]), np.float32)  # (M, kh, kw, C)
                m, kh, kw, _ = w.shape
                mp = -(-m // LANES) * LANES
                packed = np.zeros((kh * kw * w.shape[3], mp), np.float32)
                packed[:, :m] = w.transpose(1, 2, 3, 0).reshape(-1, m)
                bias = np.zeros(mp, np.float32)
                bias[:m] = interp.get_tensor(ins[2])
                self.ops.append(Op(name, [ins[0]], out, weights=packed, bias=bias, kernel=(kh, kw), outputs=m,
                                   relu=opts.FusedActivationFunction() == acts.RELU))
            elif name == "DEPTH_TO_SPACE":
                opts = schema.DepthToSpaceOptions()
                table = op.BuiltinOptions()
                opts.Init(table.Bytes, table.Pos)
                self.ops.append(Op(name, [ins[0]], out, block=int(opts.BlockSize())))
            elif name in ("SQUARE", "SQRT", "RELU"):
                self.ops.append(Op(name, [ins[0]], out))
            elif name in ("MUL", "ADD"):
                opts = schema.MulOptions() if name == "MUL" else schema.AddOptions()
                table = op.BuiltinOptions()
                if table is not None:
                    opts.Init(table.Bytes, table.Pos)
                    if opts.FusedActivationFunction() != acts.NONE:
                        raise Unsupported(f"{path}: a {name} with a fused activation")
                self.ops.append(Op(name, [operand(i) for i in ins], out))
            elif name in ("MINIMUM", "MAXIMUM"):
                self.ops.append(Op(name, [operand(i) for i in ins], out))
            else:
                raise Unsupported(f"{path}: {name} is not an op of the float synthesis")
            if any(isinstance(i, int) and i not in dynamic for i in self.ops[-1].inputs):
                raise Unsupported(f"{path}: {name} reads a tensor no earlier op writes")
            dynamic.add(out)
        self.ops = _fuse_depth_to_space(_fuse_gdn(self.ops, self.outputs), self.outputs)
        # Per op, the tensors whose last reader it is (never the graph's input or outputs): their buffers
        # may take its result.
        last: dict[int, int] = {}
        for k, op in enumerate(self.ops):
            for i in op.inputs:
                if isinstance(i, int):
                    last[i] = k
        self.last_use: dict[int, set] = {}
        for i, k in last.items():
            if i != self.input and i not in self.outputs:
                self.last_use.setdefault(k, set()).add(i)


def _fuse_gdn(ops: list[Op], outputs: list[int]) -> list[Op]:
    """SQUARE -> 1x1 CONV_2D -> SQRT -> MUL by the SQUARE's input (an inverse GDN, as tools/export.py
    writes it) as one GDN op: the kernel squares the taps, sums, takes the root and multiplies in one
    pass, with the same roundings as the four ops. Only where the intermediate tensors have no other
    reader and the convolution has as many outputs as inputs."""
    readers: dict[int, int] = {}
    for op in ops:
        for i in op.inputs:
            if isinstance(i, int):
                readers[i] = readers.get(i, 0) + 1
    by_input = {op.inputs[0]: op for op in ops if op.inputs and isinstance(op.inputs[0], int)}
    fused, skip = [], set()
    for op in ops:
        if id(op) in skip:
            continue
        conv_op = by_input.get(op.output) if op.name == "SQUARE" else None
        root = by_input.get(conv_op.output) if conv_op is not None else None
        mul = next((o for o in ops if o.name == "MUL" and root is not None and root.output in o.inputs), None)
        x = op.inputs[0] if op.name == "SQUARE" else None
        if (conv_op is not None and conv_op.name == "CONV_2D" and conv_op.kernel == (1, 1) and not conv_op.relu
                and conv_op.outputs == conv_op.weights.shape[0]
                and root is not None and root.name == "SQRT" and mul is not None
                and sorted(map(str, mul.inputs)) == sorted([str(x), str(root.output)])
                and all(readers.get(t) == 1 and t not in outputs for t in (op.output, conv_op.output, root.output))):
            c = conv_op.outputs  # the kernel reads the input's own channels: no padded outputs here
            fused.append(Op("GDN", [x], mul.output, weights=np.ascontiguousarray(conv_op.weights[:, :c]),
                            bias=np.ascontiguousarray(conv_op.bias[:c]), kernel=(1, 1), outputs=c))
            skip.update({id(conv_op), id(root), id(mul)})
        else:
            fused.append(op)
    return fused


def _fuse_depth_to_space(ops: list[Op], outputs: list[int]) -> list[Op]:
    """A DEPTH_TO_SPACE whose only reader is a GDN: the GDN reads through it (``Op.block``), without the
    copy. The values are the same; only the addressing changes."""
    readers: dict[int, int] = {}
    for op in ops:
        for i in op.inputs:
            if isinstance(i, int):
                readers[i] = readers.get(i, 0) + 1
    made = {op.output: op for op in ops if op.name == "DEPTH_TO_SPACE"}
    dropped = set()
    for op in ops:
        d2s = made.get(op.inputs[0]) if op.name == "GDN" else None
        if d2s is not None and readers.get(d2s.output) == 1 and d2s.output not in outputs:
            op.inputs, op.block = list(d2s.inputs), d2s.block
            dropped.add(id(d2s))
    return [op for op in ops if id(op) not in dropped]


def conv(op: Op, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """One CONV_2D (or fused GDN) on the kernel: (H, W, C) float32 -> (H, W, M) float32, 'same' zero
    padding."""
    kh, kw = op.kernel
    h, w, c = x.shape
    if op.name == "GDN" and op.block > 1:  # x is the DEPTH_TO_SPACE's input: the kernel reads through it
        b = op.block
        out = np.empty((h * b, w * b, op.weights.shape[1]), np.float32)
        x = np.ascontiguousarray(x, np.float32)
        split_rows(lambda first, last: _fixedpoint.conv_f32(x, op.weights, op.bias, 1, 1, first, last, out, 0,
                                                            True, b), h * b, threads, min_rows=2)
        return out
    if kh > 1 or kw > 1:
        padded = np.zeros((h + kh - 1, w + kw - 1, c), np.float32)
        padded[(kh - 1) // 2:(kh - 1) // 2 + h, (kw - 1) // 2:(kw - 1) // 2 + w] = x
    else:
        padded = np.ascontiguousarray(x, np.float32)
    out = np.empty((h, w, op.weights.shape[1]), np.float32)
    gdn = op.name == "GDN"
    split_rows(lambda first, last: _fixedpoint.conv_f32(padded, op.weights, op.bias, kh, kw, first, last, out, 0, gdn),
               h, threads, min_rows=2)
    out = out[..., :op.outputs] if op.outputs != out.shape[2] else out
    return np.maximum(out, np.float32(0)) if op.relu else out


def conv_reference(op: Op, x: np.ndarray) -> np.ndarray:
    """``conv`` in Python float64 with each fused multiply-add rounded to float32 once: the definition
    the kernel is held to (slow; for tests). float64 holds a float32 product exactly and the sum of it
    and a float32 is then rounded once, as an FMA rounds, except in double-rounding corner cases that
    the tests' values stay clear of."""
    kh, kw = op.kernel
    h, w, c = x.shape
    if op.name == "GDN" and op.block > 1:
        x = depth_to_space(x, op.block)
    h, w, c = x.shape
    p = np.pad(x, (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    p = (p * p if op.name == "GDN" else p).astype(np.float64)
    weights = op.weights.astype(np.float64).reshape(kh, kw, c, -1)
    acc = np.broadcast_to(op.bias.astype(np.float32), (h, w, op.weights.shape[1])).copy()
    for dy in range(kh):
        for dx in range(kw):
            for ch in range(c):
                acc = (acc.astype(np.float64) + p[dy:dy + h, dx:dx + w, ch:ch + 1] * weights[dy, dx, ch]).astype(np.float32)
    acc = acc[..., :op.outputs]
    if op.name == "GDN":
        return np.multiply(x, np.sqrt(acc))
    return np.maximum(acc, np.float32(0)) if op.relu else acc


def depth_to_space(x: np.ndarray, b: int) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h, w, b, b, c // (b * b)).transpose(0, 2, 1, 3, 4).reshape(h * b, w * b, c // (b * b))


class FixedOrderSynthesis:
    """``TFLiteModel``'s interface (``run``, ``delegate``, ``path``) over a ``Graph``: one (1, h, w, C)
    float32 latent array in, the image (1, H, W, 3) float32 out."""

    delegate = None

    def __init__(self, graph: Graph, threads: int = 2):
        self.graph, self.threads, self.path = graph, threads, graph.path

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(array)
        if x.ndim != 4 or x.shape[0] != 1 or x.dtype != np.float32:
            raise ValueError("the synthesis takes one (1, h, w, C) float32 array of latents")
        values = {self.graph.input: x[0]}

        def get(i):
            return values[i] if isinstance(i, int) else i[0] if i.ndim == 4 else i

        for k, op in enumerate(self.graph.ops):
            a = [get(i) for i in op.inputs]
            if op.name in ("CONV_2D", "GDN"):
                values[op.output] = conv(op, a[0], self.threads)
                continue
            if op.name == "DEPTH_TO_SPACE":
                values[op.output] = depth_to_space(a[0], op.block)
                continue
            # Elementwise: into the buffer of an operand that nothing reads after this op, if one has the
            # result's shape (the same values as a new array, one allocation and pass fewer).
            shape = np.broadcast_shapes(*(v.shape for v in a))
            spare = next((a[j] for j, i in enumerate(op.inputs) if isinstance(i, int) and k in self.graph.last_use
                          and i in self.graph.last_use[k] and a[j].shape == shape and a[j].flags.writeable), None)
            out = {"out": spare} if spare is not None else {}
            if op.name == "SQUARE":
                v = np.multiply(a[0], a[0], **out)
            elif op.name == "SQRT":
                v = np.sqrt(a[0], **out)
            elif op.name == "RELU":
                v = np.maximum(a[0], np.float32(0), **out)
            elif op.name == "MUL":
                v = np.multiply(a[0], a[1], dtype=np.float32, **out)
            elif op.name == "ADD":
                v = np.add(a[0], a[1], dtype=np.float32, **out)
            elif op.name == "MINIMUM":
                v = np.minimum(a[0], a[1], dtype=np.float32, **out)
            else:  # MAXIMUM
                v = np.maximum(a[0], a[1], dtype=np.float32, **out)
            values[op.output] = v
        return [np.ascontiguousarray(values[i])[None] for i in self.graph.outputs]


def check_against_litert(model: FixedOrderSynthesis, channels: int) -> bool:
    """Whether the image agrees with LiteRT's to within 0.05 (of 255) on a probe of latents: the same
    network, only another order of float operations."""
    from edgecodec.models.interpreter import TFLiteModel

    rng = np.random.default_rng(1)
    probe = np.round(rng.normal(0, 2, (1, 3, 5, channels))).astype(np.float32)
    (ours,) = model.run(probe)
    (theirs,) = TFLiteModel(model.path, 1).run(probe)
    return ours.shape == theirs.shape and float(np.abs(ours - theirs).max()) <= 0.05


def load(path, threads: int = 2):
    """The synthesis in ``path`` in fixed order (``FixedOrderSynthesis``), checked against LiteRT; LiteRT's
    own kernels (a ``TFLiteModel``) with one warning where the graph holds other ops or the check fails,
    or when EDGECODEC_LITERT_SYNTHESIS=1 asks for them."""
    from edgecodec.models.interpreter import TFLiteModel

    if ENABLED:
        try:
            graph = Graph(path)
            first = next(op for op in graph.ops if op.name in ("CONV_2D", "GDN"))
            model = FixedOrderSynthesis(graph, threads)
            if check_against_litert(model, first.weights.shape[0] // (first.kernel[0] * first.kernel[1])):
                return model
            reason = "its image differs from LiteRT's on a probe"
        except (ValueError, StopIteration) as exc:  # Unsupported among them
            reason = str(exc) or "no convolution"
        log.warning("synthesis %s on LiteRT's kernels (pixels may differ by one between CPUs): %s", path, reason)
    return TFLiteModel(path, threads)
