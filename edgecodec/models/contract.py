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
FLOAT_ENCODER = "encoder_float.tflite"
HYPER = "hyper.npz"
CDF_Y = "cdf_y.npz"
CDF_Z = "cdf_z.npz"

# Latents are coded with zero-mean Gaussian tables at SCALE_LEVELS log-spaced scales (Balle et al. 2018).
SCALE_MIN = 0.11
SCALE_MAX = 64.0
SCALE_LEVELS = 64
# Each table covers +-TAIL_SIGMAS standard deviations; values beyond are escape-coded by the range coder.
TAIL_SIGMAS = 6.0

# Images are edge-padded to a multiple of ALIGN; y is then exactly 1/16 of the padded size and z is
# ceil(1/4) of y (stride-2 'same' convolutions). The hyper-synthesis output is cropped to y's size.
ALIGN = 16

# Fixed-point precision of the integer hyper-synthesis requantization multipliers.
HYPER_SHIFT = 24
ACT_MAX = 127


def log_scale_step() -> float:
    return math.log(SCALE_MAX / SCALE_MIN) / (SCALE_LEVELS - 1)


def scale_table() -> np.ndarray:
    return np.exp(math.log(SCALE_MIN) + log_scale_step() * np.arange(SCALE_LEVELS))
