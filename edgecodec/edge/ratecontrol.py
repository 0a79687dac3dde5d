"""Rate control: choose each frame's quality so the stream stays under a target bitrate.

The codec cannot predict a frame's size, so the controller learns it: it keeps an estimate of the
packet size at every quality, corrected by each real packet (a change of scene moves all
estimates together), and a token bucket of the bytes the target allows. Each frame gets the
highest quality whose estimate fits its share of the bucket; when even the lowest quality does
not fit, the frame is skipped, which is the only way to stay under a target below what the
lowest quality needs at the capture rate.

In stream mode (``key_interval_s`` given) a key frame costs several delta frames, and a change of
quality costs a key frame (the stream encoder has to start over). So the quality is chosen for a
whole group, a key frame and the delta frames up to the next one, at the key frame, and held until
the next; ``choose(now, key=...)`` says whether the coming frame will be a key frame. Between key
frames the controller spends from the same bucket: a delta frame that does not fit is skipped, and
only when the delta frames themselves overrun the budget by far (a scene that changes everywhere,
every frame) does it lower the quality before the next key frame, which makes that frame a key frame.
Sizes are learned separately: key frames per quality as for stills, delta frames as a share of them.
"""
from __future__ import annotations

from typing import Optional, Sequence

STEP_RATIO = 1.2  # assumed size growth per quality step until sizes are measured
BUCKET_SECONDS = 1.0  # how much unspent budget may be saved up
DELTA_SHARE = 0.3  # assumed delta frame size as a share of a key frame's, until one is measured
OVERRUN = 2.0  # delta frames this many times their share of the budget, in debt: lower the quality now


class FixedQuality:
    def __init__(self, quality: int):
        self.quality = quality

    def choose(self, now: float, key: Optional[bool] = None) -> Optional[int]:
        return self.quality

    def observe(self, quality: int, size: int, now: float) -> None:
        pass

    def observe_frame(self, quality: int, size: int, now: float, key: bool = True) -> None:
        pass


class RateController:
    """``choose(now, key)`` before encoding a frame, ``observe_frame(quality, bytes, now, key)`` after
    (``observe`` for a key frame or a still)."""

    def __init__(self, target_kbps: float, qualities: Sequence[int], fps: float,
                 start_quality: Optional[int] = None, key_interval_s: Optional[float] = None):
        if target_kbps <= 0:
            raise ValueError("target_kbps must be positive")
        self.qualities = sorted(qualities)
        self.rate = target_kbps * 1000 / 8  # bytes per second
        self.capacity = self.rate * BUCKET_SECONDS
        self.tokens = 0.0  # start with nothing saved: the stream never exceeds the target on average
        self.interval = 1.0 / fps  # expected time between encoded frames, learned
        self.key_interval = key_interval_s  # None: every frame stands alone (no groups)
        self._last: Optional[float] = None
        self._est: Optional[dict[int, float]] = None  # key frame (still) size per quality
        self.delta_share = DELTA_SHARE  # delta frame size over key frame size, learned
        self._start = start_quality if start_quality is not None else self.qualities[len(self.qualities) // 2]
        self.held: Optional[int] = None  # stream mode: the quality of the current group
        self.skipped = 0
        self.forced_changes = 0  # quality lowered between key frames (each costs a key frame)

    def _refill(self, now: float) -> None:
        if self._last is not None:
            dt = min(max(now - self._last, 0.0), BUCKET_SECONDS)
            self.interval += 0.1 * (dt - self.interval)
            self.tokens = min(self.capacity, self.tokens + self.rate * dt)
        self._last = now

    def choose(self, now: float, key: Optional[bool] = None) -> Optional[int]:
        """The quality of the next frame, or None to skip it. ``key``: whether it will be a key frame of
        a stream (None: a still, or not known; any frame may then change the quality)."""
        self._refill(now)
        if self._est is None:
            return self._start if self.tokens > 0 else None
        if key is None or self.key_interval is None:
            return self._choose_still()
        if key or self.held is None:
            return self._choose_group()
        return self._choose_delta()

    def _choose_still(self) -> Optional[int]:
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

    def group_cost(self, quality: int) -> float:
        """Expected bytes of a key frame and the delta frames up to the next key frame at ``quality``."""
        frames = max(1.0, self.key_interval / max(self.interval, 1e-3))
        return self._est[quality] * (1 + (frames - 1) * self.delta_share)

    def _choose_group(self) -> Optional[int]:
        """At a key frame: the highest quality whose group fits the group's budget; the key frame itself
        may spend from the bucket ahead (its delta frames are small), but never from a bucket in debt."""
        frames = max(1.0, self.key_interval / max(self.interval, 1e-3))
        budget = self.rate * self.interval * frames + (self.tokens - self.capacity / 2)
        fitting = [q for q in self.qualities if self.group_cost(q) <= budget]
        quality = fitting[-1] if fitting else self.qualities[0]
        if self.tokens < 0 and self.tokens + self.capacity < self._est[quality]:
            self.skipped += 1  # deep in debt: wait; the next frame is still a key frame
            return None
        self.held = quality
        return quality

    def _choose_delta(self) -> Optional[int]:
        quality = self.held
        delta = self._est[quality] * self.delta_share
        share = self.rate * self.interval
        if (self.tokens < 0 and delta > OVERRUN * share and quality != self.qualities[0]):
            # The delta frames alone overrun the budget: waiting for the next key frame would skip
            # most frames until then. Lower the quality now (the encoder makes this frame a key frame).
            lower = self._choose_group()
            if lower is None:
                return None
            if lower < quality:
                self.forced_changes += 1
                return lower
            self.held = quality  # nothing lower fits better: keep the group's quality
        if self.tokens >= delta or self.tokens >= 0 and delta <= share:
            return quality
        self.skipped += 1
        return None

    def observe(self, quality: int, size: int, now: float) -> None:
        self.observe_frame(quality, size, now, key=True)

    def observe_frame(self, quality: int, size: int, now: float, key: bool = True) -> None:
        self.tokens -= size
        if self._est is None:
            i0 = self.qualities.index(quality)
            base = size if key else size / self.delta_share
            self._est = {q: base * STEP_RATIO ** (i - i0) for i, q in enumerate(self.qualities)}
            if self.key_interval is not None:
                self.held = quality
            return
        if self.key_interval is not None and self.held is None:
            self.held = quality
        if not key:
            share = size / max(self._est[quality], 1.0)
            self.delta_share += 0.2 * (min(share, 1.5) - self.delta_share)
            return
        factor = size / self._est[quality]
        for q in self.qualities:
            # The coded quality takes the measurement; the others shift by the same scene change.
            self._est[q] *= factor ** (0.5 if q != quality else 0.7)
        for below, q in zip(self.qualities, self.qualities[1:]):  # sizes grow with quality
            self._est[q] = max(self._est[q], self._est[below] * 1.01)
