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

# Fixed-point precision of the integer hyper-synthesis requantization multipliers.
HYPER_SHIFT = 24
ACT_MAX = 127


def fast_encoder_name(quality: int) -> str:
    return f"encoder_fast_q{quality}.tflite"


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
