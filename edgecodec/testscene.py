"""A synthetic camera scene with moving content, for tests, the demo and benchmarks without a camera.

Every frame is a pure function of its capture timestamp, so a server that knows the scene size can
recompute the exact original of any frame it receives and measure the codec's PSNR end to end.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

PERIOD_S = 3600  # the motion repeats hourly; keeps float time small and exact enough


class TestScene:
    __test__ = False  # not a pytest class

    def __init__(self, width: int, height: int, seed: int = 7):
        self.width, self.height = int(width), int(height)
        rng = np.random.default_rng(seed)
        th, tw = 2 * self.height, 2 * self.width
        # Smooth coloured "landscape" plus fine texture: some structure for the codec to spend bits on.
        coarse = rng.uniform(30, 220, size=(max(th // 80, 2), max(tw // 80, 2), 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (tw, th), interpolation=cv2.INTER_CUBIC)
        fine = rng.normal(0, 4, size=(th, tw, 1)).astype(np.float32)
        yy, xx = np.mgrid[0:th, 0:tw].astype(np.float32)
        stripes = 20 * np.sin(xx / 9.0 + yy / 17.0)[..., None]
        self._texture = np.clip(smooth + fine + stripes, 0, 255).astype(np.uint8)

    def render(self, timestamp_us: int) -> np.ndarray:
        """The H x W x 3 uint8 RGB frame seen at ``timestamp_us`` (microseconds, any epoch)."""
        t = (int(timestamp_us) % (PERIOD_S * 1_000_000)) / 1e6
        w, h = self.width, self.height
        x0 = int(round((w / 2) * (0.5 + 0.5 * math.sin(t * 0.5))))
        y0 = int(round((h / 2) * (0.5 + 0.5 * math.cos(t * 0.37))))
        frame = self._texture[y0 : y0 + h, x0 : x0 + w].copy()
        # A box sliding left to right and a ball bouncing: motion a viewer can follow.
        bw, bh = max(w // 6, 2), max(h // 5, 2)
        bx = int((t * w / 4) % max(w - bw, 1))
        by = h // 6
        frame[by : by + bh, bx : bx + bw] = (230, 60, 40)
        cx = int(w / 2 + (w / 3) * math.sin(t * 1.3))
        cy = int(h / 2 + (h / 3) * abs(math.sin(t * 2.1)) - h / 6)
        cv2.circle(frame, (cx, cy), max(min(w, h) // 10, 1), (40, 200, 250), -1, lineType=cv2.LINE_AA)
        if h >= 48:
            text = f"{t:8.2f}s"
            cv2.putText(frame, text, (8, h - 12), cv2.FONT_HERSHEY_SIMPLEX, h / 480, (255, 255, 255),
                        max(1, h // 240), cv2.LINE_AA)
        return frame
