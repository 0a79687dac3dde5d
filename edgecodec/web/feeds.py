"""Decoded pictures for the live view, made only for cameras someone is watching.

The hub hands over every frame, but a frame is queued for decoding only while its camera has viewers
(or a snapshot asked for it). One worker thread decodes the newest queued frame of each camera in
turn, so decoding takes at most one core however many cameras there are, and a slow decoder shows
live frames with gaps rather than a growing delay.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from edgecodec.bitstream import Header
from edgecodec.errors import EdgecodecError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Picture:
    """One decoded frame, kept as RGB pixels and as the JPEG sent to viewers."""

    camera_id: str
    sequence: int
    timestamp_us: int
    rgb: np.ndarray
    jpeg: bytes
    decoded_at: float


Listener = Callable[[Picture], None]


class LiveDecoder:
    """``watch``/``unwatch`` cameras; listeners get each new ``Picture`` (in the worker thread)."""

    def __init__(self, hub, decoder_factory: Callable[[], object], jpeg_quality: int = 80):
        self.hub = hub
        self.decoder_factory = decoder_factory
        self.jpeg_quality = jpeg_quality
        self.decoded: collections.Counter = collections.Counter()
        self.failed: collections.Counter = collections.Counter()
        self._viewers: collections.Counter = collections.Counter()
        self._pending: "collections.OrderedDict[str, tuple[Header, bytes]]" = collections.OrderedDict()
        self._pictures: dict[str, Picture] = {}
        self._listeners: list[Listener] = []
        self._cond = threading.Condition()
        self._closed = False
        self._decoder = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "LiveDecoder":
        self.hub.subscribe(self._on_frame)
        self._thread = threading.Thread(target=self._run, name="live-decoder", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.hub.unsubscribe(self._on_frame)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def viewers(self, camera_id: str) -> int:
        with self._cond:
            return self._viewers[camera_id]

    def watch(self, camera_id: str) -> None:
        """Count one more viewer; the camera's newest frame is decoded at once for it."""
        with self._cond:
            self._viewers[camera_id] += 1
        self.request(camera_id)

    def unwatch(self, camera_id: str) -> None:
        with self._cond:
            self._viewers[camera_id] -= 1
            if self._viewers[camera_id] <= 0:
                del self._viewers[camera_id]
                self._pending.pop(camera_id, None)

    def request(self, camera_id: str) -> bool:
        """Queue the camera's newest frame for decoding unless it is already decoded; False if none."""
        latest = self.hub.latest(camera_id)
        if latest is None:
            return False
        picture = self._pictures.get(camera_id)
        if picture is None or picture.sequence != latest[0].sequence:
            self._queue(camera_id, *latest)
        return True

    def picture(self, camera_id: str) -> Optional[Picture]:
        return self._pictures.get(camera_id)

    def _on_frame(self, camera_id: str, header: Header, packet: bytes) -> None:
        if self._viewers[camera_id] > 0:  # a stale read only delays or adds one decode
            self._queue(camera_id, header, packet)

    def _queue(self, camera_id: str, header: Header, packet: bytes) -> None:
        with self._cond:
            self._pending[camera_id] = (header, packet)  # newest wins, keeps its turn
            self._cond.notify()

    def _next(self) -> Optional[tuple[str, Header, bytes]]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            camera_id, (header, packet) = self._pending.popitem(last=False)
            return camera_id, header, packet

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            camera_id, header, packet = item
            try:
                picture = self._decode(camera_id, header, packet)
            except EdgecodecError as exc:
                self.failed[camera_id] += 1
                log.warning("live view cannot decode %s frame %d: %s", camera_id, header.sequence, exc)
                continue
            except Exception:  # keep the worker alive for the other cameras
                self.failed[camera_id] += 1
                log.exception("live view decoder failed on %s", camera_id)
                continue
            self._pictures[camera_id] = picture
            self.decoded[camera_id] += 1
            for listener in list(self._listeners):
                listener(picture)

    def _decode(self, camera_id: str, header: Header, packet: bytes) -> Picture:
        if self._decoder is None:
            self._decoder = self.decoder_factory()
        image = self._decoder.decode(packet)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        rgb = np.ascontiguousarray(image[:, :, :3])
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise EdgecodecError("JPEG encoding failed")
        return Picture(camera_id, header.sequence, header.timestamp_us, rgb, jpeg.tobytes(), time.time())
