"""Capture stage: read the source, stamp each frame with its time and sequence, offer it to the encoder.

Frames go into a ``LatestSlot``: if the encoder has not taken the previous frame yet, the new one
replaces it and the old one is counted as dropped. The pipeline never falls behind the camera.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgecodec.edge.sources import Source, SourceError
from edgecodec.edge.stage import Stage
from edgecodec.latest import LatestSlot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Captured:
    sequence: int
    timestamp_us: int
    image: np.ndarray


class CaptureStage(Stage):
    name = "capture"

    def __init__(self, source: Source, slot: LatestSlot, next_sequence: Callable[[], int],
                 retry_max: float = 10.0):
        super().__init__()
        self.source = source
        self.slot = slot
        self.next_sequence = next_sequence
        self.retry_max = retry_max
        self.captured = 0
        self.ended = False  # a video file reached its end

    @property
    def dropped(self) -> int:
        return self.slot.replaced

    def run(self) -> None:
        period = 1.0 / self.source.fps
        next_due = time.monotonic()
        opened = False
        backoff = 0.5
        try:
            while not self.stopping:
                if not opened:
                    try:
                        self.source.open()
                        opened = True
                        backoff = 0.5
                        log.info("capturing from %s at %g frames/s", self.source.describe(), self.source.fps)
                    except SourceError as exc:
                        log.warning("%s; retrying in %.1f s", exc, backoff)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.retry_max)
                        continue
                if not self.source.live:
                    # Files and the synthetic scene are paced here; late ticks are skipped, not bunched.
                    delay = next_due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_due = max(next_due + period, time.monotonic() - period)
                try:
                    got = self.source.read()
                except SourceError as exc:
                    log.warning("%s; reopening", exc)
                    self.source.close()
                    opened = False
                    continue
                if got is None:
                    log.info("end of %s", self.source.describe())
                    self.ended = True
                    return
                image, ts = got
                if self.source.live:
                    # A camera may run faster than asked: keep frames only at the configured rate.
                    now = time.monotonic()
                    if now < next_due - period / 2:
                        continue
                    next_due = max(next_due + period, now - period)
                self.slot.put(Captured(self.next_sequence(), ts, image))
                self.captured += 1
                self.beat()
        finally:
            self.source.close()
