"""Rate control: choose each frame's quality so the stream stays under a target bitrate.

The codec cannot predict a frame's size, so the controller learns it: it keeps an estimate of the
packet size at every quality, corrected by each real packet (a change of scene moves all
estimates together), and a token bucket of the bytes the target allows. Each frame gets the
highest quality whose estimate fits its share of the bucket; when even the lowest quality does
not fit, the frame is skipped, which is the only way to stay under a target below what the
lowest quality needs at the capture rate.
"""
from __future__ import annotations

from typing import Optional, Sequence

STEP_RATIO = 1.2  # assumed size growth per quality step until sizes are measured
BUCKET_SECONDS = 1.0  # how much unspent budget may be saved up


class FixedQuality:
    def __init__(self, quality: int):
        self.quality = quality

    def choose(self, now: float) -> Optional[int]:
        return self.quality

    def observe(self, quality: int, size: int, now: float) -> None:
        pass


class RateController:
    """``choose(now)`` before encoding a frame, ``observe(quality, bytes, now)`` after."""

    def __init__(self, target_kbps: float, qualities: Sequence[int], fps: float,
                 start_quality: Optional[int] = None):
        if target_kbps <= 0:
            raise ValueError("target_kbps must be positive")
        self.qualities = sorted(qualities)
        self.rate = target_kbps * 1000 / 8  # bytes per second
        self.capacity = self.rate * BUCKET_SECONDS
        self.tokens = 0.0  # start with nothing saved: the stream never exceeds the target on average
        self.interval = 1.0 / fps  # expected time between encoded frames, learned
        self._last: Optional[float] = None
        self._est: Optional[dict[int, float]] = None
        self._start = start_quality if start_quality is not None else self.qualities[len(self.qualities) // 2]
        self.skipped = 0

    def _refill(self, now: float) -> None:
        if self._last is not None:
            dt = min(max(now - self._last, 0.0), BUCKET_SECONDS)
            self.interval += 0.1 * (dt - self.interval)
            self.tokens = min(self.capacity, self.tokens + self.rate * dt)
        self._last = now

    def choose(self, now: float) -> Optional[int]:
        self._refill(now)
        if self._est is None:
            return self._start if self.tokens > 0 else None
        # A frame's share: the steady per-frame budget, plus or minus a tenth of the bucket's surplus.
        share = self.rate * self.interval + (self.tokens - self.capacity / 2) / 10
        fitting = [q for q in self.qualities if self._est[q] <= min(share, self.tokens)]
        if fitting:
            return fitting[-1]
        lowest = self.qualities[0]
        if self.tokens >= self._est[lowest]:
            return lowest
        self.skipped += 1
        return None

    def observe(self, quality: int, size: int, now: float) -> None:
        self.tokens -= size
        if self._est is None:
            i0 = self.qualities.index(quality)
            self._est = {q: size * STEP_RATIO ** (i - i0) for i, q in enumerate(self.qualities)}
            return
        factor = size / self._est[quality]
        for q in self.qualities:
            # The coded quality takes the measurement; the others shift by the same scene change.
            self._est[q] *= factor ** (0.5 if q != quality else 0.7)
        for below, q in zip(self.qualities, self.qualities[1:]):  # sizes grow with quality
            self._est[q] = max(self._est[q], self._est[below] * 1.01)
