"""Reading and writing image files as RGB(A)/gray uint8 arrays, via OpenCV, with clear errors."""
from __future__ import annotations

import pathlib

import cv2
import numpy as np

from edgecodec.errors import EdgecodecError

# OpenCV's own warnings ("[ WARN:0@0.1] global loadsave.cpp ... can't open/read file") would add a second
# line to every error this module raises with the reason; errors still reach its log.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # a build without the logging module
    pass

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".webp", ".tif", ".tiff"}


def read_image(path) -> np.ndarray:
    """Gray (H x W), RGB or RGBA uint8; 16-bit files are scaled to 8 bits."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise EdgecodecError(f"cannot read image {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise EdgecodecError(f"{path}: unsupported sample type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def write_image(path, image: np.ndarray) -> None:
    path = pathlib.Path(path)
    img = image
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    try:
        ok = cv2.imwrite(str(path), img)
    except cv2.error as exc:
        raise EdgecodecError(f"cannot write {path}: {exc}") from None
    if not ok:
        raise EdgecodecError(f"cannot write {path} (unknown extension or unwritable folder)")
