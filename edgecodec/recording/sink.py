"""The server's recorder: every frame the hub publishes goes to its camera's current recording file.

Frames are written in the publishing thread before it returns, so a frame the ingest acknowledged is
in the file (see ``writer``). Files rotate by size or age; a background thread fsyncs them now and then.
Delta frames (stream mode) are stored like key frames; a file is rotated only at a key frame, so every
file starts with one and decodes on its own (unless no key frame comes for twice the limits).
"""
from __future__ import annotations

import logging
import os
import pathlib
import re
import threading
import time
from typing import Optional

from edgecodec.bitstream import Header, Kind
from edgecodec.recording.format import RECORD_HEADER_SIZE, SUFFIX, RecordingError
from edgecodec.recording.writer import DEFAULT_INDEX_EVERY, RecordingWriter

log = logging.getLogger(__name__)

DEFAULT_ROTATE_BYTES = 512 << 20
DEFAULT_ROTATE_SECONDS = 3600.0


def safe_name(camera_id: str) -> str:
    """A file-name-safe form of a camera id (the exact id is kept inside the file)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", camera_id).lstrip(".") or "camera"


class RecordingSink:
    """Record every camera of ``hub`` under ``directory/<camera>/``; ``start`` subscribes, ``close`` seals."""

    def __init__(self, hub, directory, rotate_bytes: int = DEFAULT_ROTATE_BYTES,
                 rotate_seconds: float = DEFAULT_ROTATE_SECONDS, index_every: int = DEFAULT_INDEX_EVERY,
                 sync_seconds: float = 5.0):
        self.hub = hub
        self.directory = pathlib.Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.index_every = index_every
        self.sync_seconds = sync_seconds
        self.files: list[str] = []  # every file opened, oldest first
        self.errors = 0
        self._writers: dict[str, tuple[RecordingWriter, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._syncer: Optional[threading.Thread] = None

    def start(self) -> "RecordingSink":
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot create recording folder {self.directory}: {exc.strerror}") from None
        self.hub.subscribe(self.on_frame)
        if self.sync_seconds > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="recording-sync", daemon=True)
            self._syncer.start()
        return self

    def close(self) -> None:
        self.hub.unsubscribe(self.on_frame)
        with self._lock:
            self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=10)
        with self._lock:
            for writer, _ in self._writers.values():
                self._close_quietly(writer)
            self._writers.clear()

    def on_frame(self, camera_id: str, header: Header, packet: bytes) -> None:
        with self._lock:
            if self._stop.is_set():  # a publish that raced with close(): the files are sealed
                return
            try:
                writer = self._writer_for(camera_id, RECORD_HEADER_SIZE + len(packet),
                                          header.kind != Kind.DELTA)
                writer.append(packet, header)
            except (RecordingError, OSError) as exc:
                self.errors += 1
                log.error("recording %s frame %d failed: %s", camera_id, header.sequence, exc)
                dead = self._writers.pop(camera_id, None)
                if dead is not None:
                    self._close_quietly(dead[0])

    def _writer_for(self, camera_id: str, record_size: int, key: bool = True) -> RecordingWriter:
        current = self._writers.get(camera_id)
        if current is not None:
            writer, opened = current
            slack = 1 if key else 2  # a delta frame needs the file its reference is in
            too_big = writer.frames and writer.size + record_size > self.rotate_bytes * slack
            too_old = time.monotonic() - opened >= self.rotate_seconds * slack
            if not (too_big or too_old):
                return writer
            self._close_quietly(writer)
        writer = RecordingWriter(self._new_path(camera_id), camera_id, self.index_every)
        self.files.append(writer.path)
        self._writers[camera_id] = (writer, time.monotonic())
        log.info("recording %s to %s", camera_id, writer.path)
        return writer

    def _new_path(self, camera_id: str) -> pathlib.Path:
        name = safe_name(camera_id)
        folder = self.directory / name
        folder.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = folder / f"{name}-{stamp}{SUFFIX}"
        n = 1
        while path.exists():
            path = folder / f"{name}-{stamp}-{n}{SUFFIX}"
            n += 1
        return path

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.sync_seconds):
            with self._lock:  # dup the descriptors so a rotation cannot close them under fsync
                fds = [os.dup(w._fd) for w, _ in self._writers.values() if w._fd >= 0]
            for fd in fds:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    log.warning("fsync of a recording failed: %s", exc.strerror)
                finally:
                    os.close(fd)

    @staticmethod
    def _close_quietly(writer: RecordingWriter) -> None:
        try:
            writer.close()
        except (RecordingError, OSError) as exc:
            log.error("closing %s failed: %s", writer.path, exc)
