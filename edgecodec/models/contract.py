"""The model contract: what a model folder holds and the integer conventions encoder and decoder share.

Read with ``docs/models.md``. Nothing here imports TensorFlow or TFLite; ``tools/export.py`` writes folders
that satisfy this contract and ``edgecodec.models.ModelBundle`` loads and checks them.
"""
from __future__ import annotations

import math

import numpy as np

MANIFEST_FORMAT = 1
MANIFEST = "manifest.json"
DECODER = "decoder.tflite"
# Optional: a narrower synthesis for the same latents, named with its SHA-256 under "live_decoder" in the
# manifest. It is not part of the model id, so adding one never orphans streams already written.
LIVE_DECODER = "decoder_live.tflite"
DECODERS = ("full", "live")  # "auto" in Codec: the live one where the folder has it
FLOAT_ENCODER = "encoder_float.tflite"
# Optional: a narrower analysis writing streams of the same model (its decoder frozen while it learned),
# named under "fast_encoder" in the manifest: a float file and one int8 file per quality, each with its
# SHA-256. Outside the model id for the same reason as the live decoder.
FAST_ENCODER = "encoder_fast.tflite"
ANALYSES = ("full", "fast")
PRECISIONS = ("int8", "float")
HYPER = "hyper.npz"
CDF_Y = "cdf_y.npz"
CDF_Z = "cdf_z.npz"

# Latents are coded with zero-mean Gaussian tables at SCALE_LEVELS log-spaced scales (Balle et al. 2018).
SCALE_MIN = 0.11
SCALE_MAX = 64.0
SCALE_LEVELS = 64
# Each table covers +-TAIL_SIGMAS standard deviations; values beyond are escape-coded by the range coder.
TAIL_SIGMAS = 6.0
# Models with a mean head also centre each table at the predicted mean's fractional part, rounded to
# 1/MEAN_STEPS: MEAN_STEPS + 1 offsets -1/2 .. +1/2 per scale. Table index = scale level * offsets + offset
# index. Models whose hyper.npz names no offsets (older ones) have one, the zero-centred table.
MEAN_STEPS = 8

# Images are edge-padded to a multiple of ALIGN; y is then exactly 1/16 of the padded size and z is
# ceil(1/4) of y (stride-2 'same' convolutions). The hyper-synthesis output is cropped to y's size.
ALIGN = 16

# The checkerboard context's taps: a non-anchor latent's four anchor neighbours as (row, column) of a 3x3
# window centred on it (up, left, right, down), in the order of the taps in ``hyper.npz``'s ``ctx_w``.
CONTEXT_TAPS = ((0, 1), (1, 0), (1, 2), (2, 1))

# Fixed-point precision of the integer hyper-synthesis requantization multipliers.
HYPER_SHIFT = 24
ACT_MAX = 127


def fast_encoder_name(quality: int) -> str:
    return f"encoder_fast_q{quality}.tflite"


# Optional: int8 encoders with a fixed input size (accelerators such as the Edge TPU compile only static
# shapes), named under "fixed_encoders" in the manifest with their size, quality and SHA-256. They compute
# the same latents as the dynamic encoder of their quality, so they are outside the model id.
def fixed_encoder_name(quality: int, width: int, height: int) -> str:
    return f"encoder_q{quality}_{width}x{height}.tflite"


def log_scale_step() -> float:
    return math.log(SCALE_MAX / SCALE_MIN) / (SCALE_LEVELS - 1)


def scale_table() -> np.ndarray:
    return np.exp(math.log(SCALE_MIN) + log_scale_step() * np.arange(SCALE_LEVELS))


def mean_offsets(steps: int) -> np.ndarray:
    """The table centres of the offset indices 0 .. steps: -1/2 .. +1/2 in steps of 1/steps (steps=0: [0])."""
    return np.arange(-(steps // 2), steps // 2 + 1) / steps if steps else np.zeros(1)


def latent_pmfs(mean_steps: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pmfs, offsets, lengths) of the latents' tables, for ``CdfTables.from_pmfs``: a unit-bin
    discretized Gaussian per scale level and, within it, per mean offset, in table-index order
    (``level * (mean_steps + 1) + offset``). Each covers +-(TAIL_SIGMAS * scale + 1) around zero."""
    def tail(t, s):  # P(X > t) for X ~ N(0, s), accurate far out on either side
        return 0.5 * math.erfc(t / (s * math.sqrt(2)))

    scales = scale_table()
    width = int(math.ceil(scales[-1] * TAIL_SIGMAS)) + 1
    pmfs, offsets, lengths = [], [], []
    for s in scales:
        r = int(math.ceil(s * TAIL_SIGMAS)) + 1
        v = np.arange(-r, r + 1, dtype=np.float64)
        for mu in mean_offsets(mean_steps):
            lo, hi = v - 0.5 - mu, v + 0.5 - mu
            row = np.zeros(2 * width + 1)
            row[:len(v)] = [tail(a, s) - tail(b, s) if a >= 0 else tail(-b, s) - tail(-a, s)
                            for a, b in zip(lo, hi)]
            pmfs.append(row)
            offsets.append(-r)
            lengths.append(len(v))
    return np.array(pmfs), np.array(offsets, np.int32), np.array(lengths, np.int32)


def gmacs(config: dict, height: int = 480, width: int = 640) -> dict:
    """Multiply-accumulates (in GMAC) of a frame through each part of a model with this manifest
    ``config``, counted from the layer shapes as the runtime runs them: the int8 encoder (analysis, its
    first layer as space-to-depth + 3x3 over 12 channels, and hyper-analysis), the hyper-synthesis and the
    checkerboard context (integer, on both sides), and the float synthesis (inverse GDN as its C x C
    product per pixel). A machine's speed does not change these figures."""
    n1, n2, n3 = config["n_enc"]
    latent, hyper, hyper_latent = config["latent"], config["hyper"], config["hyper_latent"]

    def pixels(stride):
        return math.ceil(height / stride) * math.ceil(width / stride)

    def conv(stride, cin, cout, k=3):
        return pixels(stride) * k * k * cin * cout

    analysis = conv(2, 12, n1) + conv(4, n1, n2) + conv(8, n2, n3) + conv(16, n3, latent)
    hyper_analysis = conv(16, n3, hyper) + conv(32, hyper, hyper) + conv(64, hyper, hyper_latent)
    hyper_synthesis = conv(64, hyper_latent, 4 * hyper) + conv(32, hyper, 4 * hyper) + conv(16, hyper, 2 * latent)
    context = pixels(16) // 2 * 4 * latent * 2 * latent if config.get("context", True) else 0
    synthesis, stride, cin = 0, 16, latent
    for w, res in zip(config["n_dec"], config.get("dec_res", (0,) * len(config["n_dec"]))):
        synthesis += conv(stride, cin, 4 * w)
        stride //= 2
        synthesis += pixels(stride) * w * w + res * 2 * conv(stride, w, w)
        cin = w
    synthesis += conv(stride, cin, 12)
    return {name: value / 1e9 for name, value in (
        ("edge_encoder", analysis + hyper_analysis), ("hyper_synthesis", hyper_synthesis),
        ("context", context), ("synthesis", synthesis))}
