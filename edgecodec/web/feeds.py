"""Decoded pictures for the live view, made only for cameras someone is watching.

The hub hands over every frame, but a frame is queued for decoding only while its camera has viewers
(or a snapshot asked for it). One worker thread decodes the newest queued frame of each camera in
turn, so decoding takes at most one core however many cameras there are, and a slow decoder shows
live frames with gaps rather than a growing delay.

In stream mode a delta frame decodes only on top of the frame before it, so every queued frame's
latents are decoded in order (cheap, ``server.follow``) and only the newest is synthesized. A camera that
starts being watched (or a snapshot) begins at its last key frame, which the hub keeps with the frames
since; after a gap the camera's view waits for the next key frame, logging once and counting
(``waiting``): it never shows a frame decoded on the wrong reference.
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
from edgecodec.server.follow import StreamFollower

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
        self.waiting: collections.Counter = collections.Counter()  # frames passed over waiting for a key frame
        self.key_waits: collections.Counter = collections.Counter()  # times a view had to wait for one
        self._viewers: collections.Counter = collections.Counter()
        # Per camera, the frames to decode in order (the newest is shown); a camera keeps its turn.
        self._pending: "collections.OrderedDict[str, list[tuple[Header, bytes]]]" = collections.OrderedDict()
        self._following: set[str] = set()  # cameras whose every frame is queued since their last key frame
        self._followers: dict[str, StreamFollower] = {}  # used by the worker thread only
        self._restart: set[str] = set()  # cameras whose follower starts over (from a key frame)
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
                self._following.discard(camera_id)

    def request(self, camera_id: str) -> bool:
        """Queue the camera's newest frame for decoding unless it is already decoded; False if none.
        Unless the camera's frames are being followed already, decoding starts over at its last key frame."""
        latest = self.hub.latest(camera_id)
        if latest is None:
            return False
        picture = self._pictures.get(camera_id)
        if picture is not None and picture.sequence == latest[0].sequence:
            return True
        with self._cond:
            if camera_id in self._following:
                return True  # every frame is queued (or being decoded) in order: the newest comes next
            group = self.hub.since_key(camera_id) or [latest]
            self._pending[camera_id] = list(group)
            self._restart.add(camera_id)
            if self._viewers[camera_id] > 0:
                self._following.add(camera_id)
            self._cond.notify()
        return True

    def picture(self, camera_id: str) -> Optional[Picture]:
        return self._pictures.get(camera_id)

    def _on_frame(self, camera_id: str, header: Header, packet: bytes) -> None:
        if camera_id not in self._following:  # a stale read: request() starts from the key frame
            return
        with self._cond:
            if camera_id in self._following:
                frames = self._pending.setdefault(camera_id, [])  # a new camera goes last, others keep their turn
                frames.append((header, packet))
                self._cond.notify()

    def _next(self) -> Optional[tuple[str, list, bool]]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            camera_id, frames = self._pending.popitem(last=False)
            restart = camera_id in self._restart
            self._restart.discard(camera_id)
            return camera_id, frames, restart

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            camera_id, frames, restart = item
            try:
                picture = self._decode(camera_id, frames, restart)
            except EdgecodecError as exc:
                self.failed[camera_id] += 1
                log.warning("live view cannot decode %s frame %d: %s", camera_id, frames[-1][0].sequence, exc)
                continue
            except Exception:  # keep the worker alive for the other cameras
                self.failed[camera_id] += 1
                log.exception("live view decoder failed on %s", camera_id)
                continue
            if picture is None:
                continue
            self._pictures[camera_id] = picture
            self.decoded[camera_id] += 1
            for listener in list(self._listeners):
                listener(picture)

    def _decode(self, camera_id: str, frames: list, restart: bool) -> Optional[Picture]:
        """The picture of the newest of ``frames`` (decoded in order), None while waiting for a key frame."""
        if self._decoder is None:
            self._decoder = self.decoder_factory()
        if not hasattr(self._decoder, "synthesize"):  # a decoder of stills only (a stand-in in tests)
            header, packet = frames[-1]
            return self._picture(camera_id, header, self._decoder.decode(packet))
        follower = self._followers.get(camera_id)
        if follower is None:
            follower = self._followers[camera_id] = StreamFollower(self._decoder, camera_id, who="live view")
        elif restart:
            follower.reset()
        waiting, waits, errors = follower.waiting_frames, follower.waits, follower.errors
        try:
            shown = follower.advance(frames)
        finally:
            self.waiting[camera_id] += follower.waiting_frames - waiting
            self.key_waits[camera_id] += follower.waits - waits
            self.failed[camera_id] += follower.errors - errors
        if shown is None:
            return None
        header, y = shown
        try:
            image = self._decoder.synthesize(header, y)
        except BaseException:
            follower.reset()
            raise
        return self._picture(camera_id, header, image)

    def _picture(self, camera_id: str, header: Header, image: np.ndarray) -> Picture:
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        rgb = np.ascontiguousarray(image[:, :, :3])
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise EdgecodecError("JPEG encoding failed")
        return Picture(camera_id, header.sequence, header.timestamp_us, rgb, jpeg.tobytes(), time.time())
