"""Where frames come from: the synthetic test scene, or anything OpenCV opens (camera, file, stream).

A source returns RGB frames at the configured size with their capture timestamps. ``live`` sources
(cameras, network streams) deliver at their own pace; the others are paced by the capture stage.
"""
from __future__ import annotations

import abc
import logging
import time
from typing import Optional

import numpy as np

from edgecodec.errors import EdgecodecError
from edgecodec.testscene import TestScene

log = logging.getLogger(__name__)


class SourceError(EdgecodecError):
    """The source cannot be opened or stopped delivering frames."""


def now_us() -> int:
    """Capture timestamps: wall-clock microseconds, comparable across hosts with synchronised clocks."""
    return time.time_ns() // 1000


class Source(abc.ABC):
    live = False

    def __init__(self, width: int, height: int, fps: float):
        self.width, self.height, self.fps = width, height, fps

    def open(self) -> None:
        """Acquire the device or file; raise SourceError if it cannot be opened."""

    @abc.abstractmethod
    def read(self) -> Optional[tuple[np.ndarray, int]]:
        """Return (H x W x 3 uint8 RGB, timestamp_us); None at the end of a file; SourceError on failure."""

    def close(self) -> None:
        """Release the device or file."""

    def describe(self) -> str:
        return type(self).__name__


class SyntheticSource(Source):
    def __init__(self, width: int, height: int, fps: float):
        super().__init__(width, height, fps)
        self.scene = TestScene(width, height)

    def read(self) -> tuple[np.ndarray, int]:
        ts = now_us()
        return self.scene.render(ts), ts

    def describe(self) -> str:
        return f"synthetic scene {self.width}x{self.height}"


class OpenCVSource(Source):
    def __init__(self, spec: str, width: int, height: int, fps: float, loop: bool = False):
        super().__init__(width, height, fps)
        self.spec = spec
        self.loop = loop
        self.is_device = spec.isdigit() or spec.startswith("/dev/video")
        self.live = self.is_device or "://" in spec
        self._cap = None

    def open(self) -> None:
        import cv2

        if self.spec.isdigit():
            cap = cv2.VideoCapture(int(self.spec), cv2.CAP_V4L2)
        elif self.is_device:
            cap = cv2.VideoCapture(self.spec, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video source {self.spec!r}")
        if self.is_device:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a deep driver buffer would add latency
        self._cap = cap

    def read(self) -> Optional[tuple[np.ndarray, int]]:
        import cv2

        if self._cap is None:
            raise SourceError("source is not open")
        ok, bgr = self._cap.read()
        ts = now_us()
        if not ok and not self.live and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
            ts = now_us()
        if not ok:
            if self.live:
                raise SourceError(f"{self.spec!r} stopped delivering frames")
            return None
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if bgr.shape[:2] != (self.height, self.width):
            bgr = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ts

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        kind = "camera" if self.is_device else "stream" if self.live else "file"
        return f"{kind} {self.spec} at {self.width}x{self.height}"


def open_source(spec: str, width: int, height: int, fps: float, loop: bool = False) -> Source:
    """The source named by ``spec`` (not yet opened)."""
    if spec == "synthetic":
        return SyntheticSource(width, height, fps)
    return OpenCVSource(spec, width, height, fps, loop)
