"""Append frames to one recording file, each as a single write, so a killed writer leaves whole records.

A record goes to the kernel in one ``os.write`` before ``append`` returns: after ``kill -9`` every
appended frame is in the file; only a record being written at that instant can be torn, and the
reader detects that by length and CRC. ``sync`` (fsync) is what protects against power loss.
"""
from __future__ import annotations

import os
import time
from typing import Optional

from edgecodec import bitstream
from edgecodec.recording.format import (
    FRAME_SYNC, INDEX_SYNC, FileHeader, IndexEntry, RecordingError, pack_file_header, pack_index,
    pack_record,
)
from edgecodec.recording.lock import lock_for_writing

DEFAULT_INDEX_EVERY = 64


def now_us() -> int:
    return time.time_ns() // 1000


class RecordingWriter:
    """One open recording: ``append`` frame packets, then ``close`` (which writes the last index)."""

    def __init__(self, path, camera_id: str, index_every: int = DEFAULT_INDEX_EVERY,
                 created_us: Optional[int] = None):
        if index_every < 1:
            raise ValueError("index_every must be at least 1")
        self.path = os.fspath(path)
        self.header = FileHeader(camera_id, now_us() if created_us is None else created_us, index_every)
        head = pack_file_header(self.header)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            raise RecordingError(f"cannot create recording {self.path}: {exc.strerror}") from None
        lock_for_writing(self._fd)  # O_EXCL made the file ours; the lock tells readers it is live
        self.size = 0
        self.frames = 0
        self.first_timestamp_us: Optional[int] = None
        self._pending: list[IndexEntry] = []
        self._last_index = 0
        self._write(head)

    def append(self, packet: bytes, header: Optional[bitstream.Header] = None,
               received_us: Optional[int] = None) -> int:
        """Write one frame packet; return its record's offset. ``header`` saves re-parsing the packet."""
        if header is None:
            header, _ = bitstream.unpack(packet)
        offset = self.size
        self._write(pack_record(FRAME_SYNC, packet, header.sequence, header.timestamp_us,
                                now_us() if received_us is None else received_us))
        self.frames += 1
        if self.first_timestamp_us is None:
            self.first_timestamp_us = header.timestamp_us
        self._pending.append(IndexEntry(offset, header.timestamp_us, header.sequence))
        if len(self._pending) >= self.header.index_every:
            self.write_index()
        return offset

    def write_index(self) -> None:
        """Write an index record for the frames appended since the last one (nothing if none)."""
        if not self._pending:
            return
        offset = self.size
        last = self._pending[-1]
        self._write(pack_record(INDEX_SYNC, pack_index(self._last_index, self._pending),
                                len(self._pending), last.timestamp_us, now_us()))
        self._last_index = offset
        self._pending = []

    def sync(self) -> None:
        """Flush the file to the disk (survives power loss, not only a killed process)."""
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.write_index()
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            raise RecordingError(f"recording {self.path} is closed")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            # Cut the partial record so the file still ends on a whole one, then report.
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass
            raise RecordingError(f"cannot write recording {self.path}: {exc.strerror}") from None
        self.size += len(data)
