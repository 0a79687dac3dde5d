"""Training images (loading folders, drawing augmented crops, packing them) and the per-quality summary of
a training log line. No framework imports, so the TensorFlow (v1) and PyTorch (v2) training scripts and
the GPU round's packer share it."""
from __future__ import annotations

import pathlib

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp", ".tif", ".tiff"}


def load_images(folders, min_side):
    images = []
    for folder in folders:
        for path in sorted(pathlib.Path(folder).rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None or min(img.shape[:2]) < min_side:
                continue
            images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if not images:
        raise SystemExit(f"train: no usable images (min side {min_side}) under {folders}")
    return images


def batches(images, batch, crop, rng, scale_min=1.0):
    """Random crops with flips; the area of each image decides how often it is drawn.

    With ``scale_min`` < 1 each crop is first cut at a random size up to ``crop / scale_min`` (as far as
    the image allows) and shrunk to ``crop`` with area filtering, so 250 photos show their content at
    many scales rather than one."""
    weights = np.array([im.shape[0] * im.shape[1] for im in images], np.float64)
    weights /= weights.sum()
    while True:
        out = np.empty((batch, crop, crop, 3), np.uint8)
        for i, idx in enumerate(rng.choice(len(images), batch, p=weights)):
            im = images[idx]
            side = min(int(crop / rng.uniform(scale_min, 1.0)), *im.shape[:2])
            y = rng.integers(0, im.shape[0] - side + 1)
            x = rng.integers(0, im.shape[1] - side + 1)
            c = im[y:y + side, x:x + side]
            if side != crop:
                c = cv2.resize(c, (crop, crop), interpolation=cv2.INTER_AREA)
            if rng.random() < 0.5:
                c = c[:, ::-1]
            if rng.random() < 0.5:
                c = c[::-1]
            out[i] = c
        yield out


def pack_crops(images, path, budget_bytes, crop, rng, scale_min=0.35, jpeg_quality=95):
    """Write augmented crops (``batches``) as JPEG (4:4:4) into one ``.npz`` of at most ``budget_bytes``:
    a training set small enough to travel to a GPU machine. Returns the number of crops."""
    blobs, total = [], 0
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    for batch in batches(images, 1, crop, rng, scale_min):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(batch[0], cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise SystemExit("pack: JPEG encoding failed")
        if total + buf.size + 4096 > budget_bytes:  # room for the offsets and the zip directory
            break
        blobs.append(buf.ravel())
        total += buf.size
    offsets = np.cumsum([0] + [b.size for b in blobs]).astype(np.int64)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=offsets, crop=np.int32(crop))
    return len(blobs)


def load_pack(path) -> np.ndarray:
    """The crops of a ``pack_crops`` file as one uint8 RGB array (N, crop, crop, 3)."""
    with np.load(path) as data:
        jpeg, offsets, crop = data["jpeg"], data["offsets"], int(data["crop"])
    out = np.empty((len(offsets) - 1, crop, crop, 3), np.uint8)
    for i in range(len(out)):
        img = cv2.imdecode(jpeg[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None or img.shape != (crop, crop, 3):
            raise SystemExit(f"{path}: crop {i} does not decode to {crop}x{crop}")
        out[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return out


def rd_summary(records, n_q: int) -> str:
    """Per quality, mean bpp and PSNR of (quality, bpp, mse) records."""
    parts = []
    for q in range(n_q):
        mine = [(b, m) for rq, b, m in records if rq == q]
        if mine:
            b, m = np.mean(mine, axis=0)
            parts.append(f"q{q}:{b:.3f}bpp/{10 * np.log10(1 / max(m, 1e-10)):.2f}dB")
    return " ".join(parts)
