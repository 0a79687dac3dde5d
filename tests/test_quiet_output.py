"""What a user sees on the terminal: an encode says one line of its own, a failure one line of error; the
runtimes' own chatter (LiteRT's XNNPACK INFO line, OpenCV's read warnings) stays out of it."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np


def edgecodec(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgecodec", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_encode_and_decode_print_no_runtime_info_lines(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    enc = edgecodec("encode", "a.png", "-o", "a.ecc", "-q", "3", cwd=tmp_path)
    dec = edgecodec("decode", "a.ecc", "-o", "b.png", cwd=tmp_path)
    assert enc.returncode == 0 and dec.returncode == 0
    for run in (enc, dec):
        assert "INFO" not in run.stderr and "XNNPACK" not in run.stderr + run.stdout
        assert len(run.stdout.strip().splitlines()) == 1


def test_an_unreadable_image_is_one_line_of_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    run = edgecodec("encode", "broken.png", "-o", "x.ecc", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert "broken.png" in run.stderr and "WARN" not in run.stderr
