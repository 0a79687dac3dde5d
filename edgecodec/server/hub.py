"""The server's meeting point: the ingest side publishes frames, recorders and live views consume them.

Frames stay compressed here; decoding happens only in a consumer that needs pixels (a live viewer).
Subscribers are called in the publishing thread/task and must not block: hand heavy work off.

In stream mode a frame may be a delta frame, which decodes only after every frame back to the last key
frame; the hub keeps those frames per camera (``since_key``), so a viewer that joins mid-stream
decodes the newest frame at once instead of waiting for the next key frame.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Optional

from edgecodec.bitstream import Header, Kind

Subscriber = Callable[[str, Header, bytes], None]

GROUP_FRAMES = 1024  # frames kept since the last key frame, at most (past this a joiner waits for a key)
GROUP_BYTES = 32 << 20


@dataclasses.dataclass
class CameraStats:
    camera_id: str
    frames: int = 0
    bytes: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    dropped: int = 0
    width: int = 0
    height: int = 0
    connected: bool = False
    _window: list = dataclasses.field(default_factory=list, repr=False)

    def fps(self, now: Optional[float] = None, window: float = 5.0) -> float:
        now = time.time() if now is None else now
        recent = [t for t, _ in self._window if now - t <= window]
        return len(recent) / window if recent else 0.0

    def kbps(self, now: Optional[float] = None, window: float = 5.0) -> float:
        now = time.time() if now is None else now
        return sum(n for t, n in self._window if now - t <= window) * 8 / 1000 / window

    def compression_ratio(self) -> float:
        """Raw RGB bytes over compressed bytes, for the frames seen so far."""
        raw = self.width * self.height * 3 * self.frames
        return raw / self.bytes if self.bytes else 0.0


class FrameHub:
    """Latest frame and statistics per camera, and fan-out of every new frame to subscribers."""

    def __init__(self, window: float = 5.0):
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Header, bytes]] = {}
        self._groups: dict[str, Optional[list]] = {}  # camera -> frames since its last key frame
        self._group_bytes: dict[str, int] = {}
        self._stats: dict[str, CameraStats] = {}
        self._subscribers: list[Subscriber] = []
        self._window = window

    def subscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def set_connected(self, camera_id: str, connected: bool) -> None:
        with self._lock:
            self._stats.setdefault(camera_id, CameraStats(camera_id)).connected = connected

    def add_dropped(self, camera_id: str, count: int) -> None:
        with self._lock:
            self._stats.setdefault(camera_id, CameraStats(camera_id)).dropped += count

    def publish(self, camera_id: str, header: Header, packet: bytes) -> None:
        now = time.time()
        with self._lock:
            st = self._stats.setdefault(camera_id, CameraStats(camera_id))
            if not st.frames:
                st.first_seen = now
            st.frames += 1
            st.bytes += len(packet)
            st.last_seen = now
            st.width, st.height = header.width, header.height
            st._window.append((now, len(packet)))
            st._window[:] = [(t, n) for t, n in st._window if now - t <= self._window]
            self._latest[camera_id] = (header, packet)
            self._keep(camera_id, header, packet)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(camera_id, header, packet)

    def _keep(self, camera_id: str, header: Header, packet: bytes) -> None:
        if header.kind != Kind.DELTA:
            self._groups[camera_id], self._group_bytes[camera_id] = [(header, packet)], len(packet)
            return
        group = self._groups.get(camera_id)
        if group is None:
            return
        size = self._group_bytes[camera_id] + len(packet)
        if len(group) >= GROUP_FRAMES or size > GROUP_BYTES:
            self._groups[camera_id] = None  # too long without a key frame: joiners wait for one
            return
        group.append((header, packet))
        self._group_bytes[camera_id] = size

    def since_key(self, camera_id: str) -> list[tuple[Header, bytes]]:
        """The camera's frames from its last key frame to the newest, in order (just the newest frame of
        an intra stream); empty when none is known or the group grew past the limits."""
        with self._lock:
            return list(self._groups.get(camera_id) or ())

    def latest(self, camera_id: str) -> Optional[tuple[Header, bytes]]:
        with self._lock:
            return self._latest.get(camera_id)

    def cameras(self) -> list[CameraStats]:
        with self._lock:
            return [dataclasses.replace(s, _window=list(s._window)) for s in self._stats.values()]
