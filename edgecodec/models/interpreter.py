"""TFLite interpreter access: LiteRT (``ai-edge-litert``) where installed, else ``tflite_runtime``."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

import numpy as np

from edgecodec.errors import ModelError

try:
    from ai_edge_litert.interpreter import Interpreter as _Interpreter
    from ai_edge_litert.interpreter import OpResolverType as _OpResolverType
    from ai_edge_litert.interpreter import load_delegate as _load_delegate

    RUNTIME = "ai-edge-litert"
except ImportError:  # older Raspberry Pi OS images ship only tflite_runtime
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter
        from tflite_runtime.interpreter import OpResolverType as _OpResolverType
        from tflite_runtime.interpreter import load_delegate as _load_delegate

        RUNTIME = "tflite-runtime"
    except ImportError:
        _Interpreter = _load_delegate = _OpResolverType = None
        RUNTIME = None

log = logging.getLogger(__name__)
_DELEGATES: dict = {}  # library -> loaded delegate, or the reason it could not be loaded


def load_delegate(library: str):
    """The TFLite delegate in ``library`` (e.g. ``libedgetpu.so.1`` for a Coral Edge TPU), loaded once per
    process; None, with one warning naming the reason, when it cannot be loaded: the caller then runs
    on the CPU."""
    if library not in _DELEGATES:
        try:
            _DELEGATES[library] = _load_delegate(library)
        except (ValueError, OSError, RuntimeError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _DELEGATES[library] = reason
            log.warning("delegate %s not available (%s): running the encoder on the CPU", library, reason)
    found = _DELEGATES[library]
    return None if isinstance(found, str) else found


def reference_interpreter(path):
    """An interpreter of ``path`` on TFLite's reference kernels (no XNNPACK): its constant tensors stay
    readable, and its int8 results are the plain integer definition that edgecodec.models.analysis
    computes too. Slow (0.3 s a 640x480 encode); for reading a graph and checking against it."""
    if _Interpreter is None:
        raise ModelError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime on old Pi OS)")
    try:
        with _native_stderr_silenced():
            return _Interpreter(model_path=str(path), num_threads=1,
                                experimental_op_resolver_type=_OpResolverType.BUILTIN_REF)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load {path}: {exc}") from None


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration: LiteRT's C++ logger writes
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." there when a model's tensors are first
    allocated, and has no switch to turn it off. Python's own writes (sys.stderr) are flushed first;
    failures still surface as the exceptions the interpreter raises."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded, closed)
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class TFLiteModel:
    """One TFLite model with named inputs and outputs, resized on demand to each input's shape.

    Integer outputs are returned as the real values they stand for (``(q - zero_point) * scale``); an
    encoder whose outputs are pinned to scale 1 and zero point 0 therefore returns its latents unchanged.
    """

    def __init__(self, path, threads: int = 2, delegate: str | None = None):
        if _Interpreter is None:
            raise ModelError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime on old Pi OS)")
        loaded = load_delegate(delegate) if delegate else None
        self.delegate = delegate if loaded is not None else None  # what the model runs on
        try:
            with _native_stderr_silenced():
                self._interp = _Interpreter(model_path=str(path), num_threads=threads,
                                            **({"experimental_delegates": [loaded]} if loaded is not None else {}))
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load {path}: {exc}") from None
        self.path = str(path)
        self._lock = threading.Lock()
        self._inputs = {d["name"]: d for d in self._interp.get_input_details()}
        self._shape = {}

    def output_scales(self) -> dict:
        return {d["name"]: d["quantization"] for d in self._interp.get_output_details()}

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        """Run on one input; outputs in the model's output order, as float32 or integer arrays."""
        with self._lock:
            detail = next(iter(self._inputs.values()))
            index = detail["index"]
            if self._shape.get(index) != array.shape:
                self._interp.resize_tensor_input(index, array.shape, strict=False)
                with _native_stderr_silenced():
                    self._interp.allocate_tensors()
                self._shape[index] = array.shape
            self._interp.set_tensor(index, array.astype(detail["dtype"], copy=False))
            self._interp.invoke()
            outs = []
            for d in self._interp.get_output_details():
                value = self._interp.get_tensor(d["index"])
                scale, zero = d["quantization"]
                if value.dtype != np.float32 and scale:
                    if scale == 1.0 and zero == 0:
                        value = value.astype(np.int32)
                    else:
                        value = (value.astype(np.float32) - zero) * scale
                outs.append(value)
            return outs

    def output_names(self) -> list[str]:
        return [d["name"] for d in self._interp.get_output_details()]
