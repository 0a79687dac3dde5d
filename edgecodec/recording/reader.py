"""Read a recording: find its intact frames, report damaged or torn regions, seek by time via the index.

Nothing past a failed length or CRC check is trusted. After a damaged record the reader looks for the
next record that verifies (sync marker + CRC), so one bad record costs only itself; a damaged region
that runs to the end of the file is a torn tail, what a killed writer leaves.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from typing import Iterator, Optional

from edgecodec.recording.format import (
    FRAME_SYNC, INDEX_SYNC, RECORD_HEADER_SIZE, SYNCS, FileHeader, IndexEntry, RecordingError,
    file_header_size, record_intact, unpack_file_header, unpack_index, unpack_record_header,
)
from edgecodec.recording.lock import being_written

_CHUNK = 1 << 20


KEY_KINDS = (0, 1)  # bitstream Kind.IMAGE, Kind.FRAME: decodable alone
DELTA_KIND = 2  # bitstream Kind.DELTA: coded against frame ``sequence - reference``


@dataclass(frozen=True)
class Frame:
    """Where one intact frame record lies, what its header says, and (from the packet's own header)
    whether it is a key frame or a delta frame coded against frame ``sequence - reference``."""

    offset: int
    length: int
    sequence: int
    timestamp_us: int
    received_us: int
    kind: int = 1
    reference: int = 0

    @property
    def end(self) -> int:
        return self.offset + RECORD_HEADER_SIZE + self.length

    @property
    def key(self) -> bool:
        """Decodable on its own (a key frame; every frame of a recording made before stream mode)."""
        return self.kind != DELTA_KIND

    @property
    def reference_sequence(self) -> Optional[int]:
        return self.sequence - self.reference if self.kind == DELTA_KIND else None


def packet_kind(payload: bytes) -> tuple[int, int]:
    """(kind, reference) from a frame packet's header bytes, without verifying the packet (the decoder
    does that). Anything that is not a delta frame's header reads as a key frame."""
    if len(payload) < 44 or payload[:4] != b"\x89ECC" or payload[4] != 2 or payload[5] != DELTA_KIND:
        return 1, 0
    return DELTA_KIND, int.from_bytes(payload[41:43], "little")


@dataclass(frozen=True)
class Damage:
    """A byte range that holds no verifiable record; ``at_end``: it runs to the end of the file."""

    offset: int
    length: int
    at_end: bool

    def describe(self) -> str:
        what = "torn last record" if self.at_end else "damaged data"
        return f"{what}: {self.length} bytes at offset {self.offset}"


@dataclass(frozen=True)
class IndexRecord:
    offset: int
    end: int
    previous: int
    entries: list


@dataclass
class Scan:
    frames: list[Frame] = field(default_factory=list)
    # With a time range: frames outside it that a selected delta frame needs decoded first, from the
    # key frame at or before it (decode them, do not show them). Sorted by offset.
    lead: list[Frame] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    end: int = 0  # where the last intact record ends
    growing: int = 0  # bytes of a record its live writer is still appending (not damage)

    @property
    def intact(self) -> bool:
        return not self.damage


class RecordingReader:
    """An open recording file; ``scan`` lists its frames, ``read`` fetches one frame's packet."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise RecordingError(f"cannot open recording {self.path}: {exc.strerror}") from None
        try:
            prefix = self._file.read(64)
            size = file_header_size(prefix)
            self.header: FileHeader = unpack_file_header(prefix + self._file.read(max(size - len(prefix), 0)))
        except RecordingError as exc:
            self._file.close()
            raise RecordingError(f"{self.path}: {exc}") from None
        self.data_start = size

    @property
    def camera_id(self) -> str:
        return self.header.camera_id

    @property
    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading records -------------------------------------------------------------------

    def _record_at(self, offset: int, limit: int):
        """(header, payload) of the record verified at ``offset``, or None."""
        self._file.seek(offset)
        head = self._file.read(RECORD_HEADER_SIZE)
        header = unpack_record_header(head)
        if header is None or offset + RECORD_HEADER_SIZE + header.length > limit:
            return None
        payload = self._file.read(header.length)
        return (header, payload) if record_intact(head, header, payload) else None

    def _resync(self, offset: int, limit: int) -> Optional[int]:
        """Offset of the next verifiable record after ``offset``, or None before ``limit``."""
        pos = offset + 1
        while pos < limit:
            self._file.seek(pos)
            chunk = self._file.read(min(_CHUNK, limit - pos) + 3)
            hits = sorted(i for sync in SYNCS for i in _find_all(chunk, sync))
            for i in hits:
                if self._record_at(pos + i, limit) is not None:
                    return pos + i
            pos += _CHUNK
        return None

    def records(self, start: Optional[int] = None, stop: Optional[int] = None) -> Iterator[tuple]:
        """Yield ("frame", Frame), ("index", IndexRecord) or ("damage", Damage) in file order.

        Scans from ``start`` (default: the first record) until a record begins at or after ``stop``.
        """
        limit = self.size
        pos = self.data_start if start is None else start
        stop = limit if stop is None else min(stop, limit)
        while pos < stop:
            found = self._record_at(pos, limit)
            if found is None:
                nxt = self._resync(pos, limit)
                yield "damage", Damage(pos, (limit if nxt is None else nxt) - pos, nxt is None)
                if nxt is None:
                    return
                pos = nxt
                continue
            header, payload = found
            if header.sync == FRAME_SYNC:
                yield "frame", Frame(pos, header.length, header.sequence, header.timestamp_us,
                                     header.received_us, *packet_kind(payload))
            else:
                try:
                    previous, entries = unpack_index(payload)
                    yield "index", IndexRecord(pos, pos + RECORD_HEADER_SIZE + header.length, previous,
                                               entries)
                except RecordingError:
                    yield "damage", Damage(pos, RECORD_HEADER_SIZE + header.length, False)
            pos += RECORD_HEADER_SIZE + header.length

    def scan(self, start_us: Optional[int] = None, end_us: Optional[int] = None) -> Scan:
        """Intact frames with start_us <= timestamp_us <= end_us (bounds optional), and damage met.

        With a lower bound, the index chain lets the scan skip the records before the first match; it
        starts at the key frame at or before it, so that ``lead`` lists the frames a selected delta frame
        needs decoded first (the chain back to its key frame, never across damage).
        """
        regions = [(None, None)]
        if start_us is not None or end_us is not None:
            regions = self._regions(start_us, end_us) or regions
        result = Scan(end=self.data_start)
        chain: list[Frame] = []  # frames outside the range since the last key frame
        for start, stop in regions:
            chain = []
            for kind, item in self.records(start, stop):
                if kind == "damage":
                    result.damage.append(item)
                    chain = []
                    continue
                result.end = item.end
                if kind != "frame":
                    continue
                if _in_range(item.timestamp_us, start_us, end_us):
                    result.frames.append(item)
                    if not item.key:
                        result.lead.extend(chain)
                    chain = []
                elif item.key:
                    chain = [item]
                else:
                    chain.append(item)
        if result.damage and result.damage[-1].at_end and being_written(self.path):
            result.growing = result.damage.pop().length
        return result

    def read(self, frame: Frame) -> bytes:
        """The packet of ``frame``, verified again (the file may have changed since the scan)."""
        return self.read_at(frame.offset)

    def read_at(self, offset: int) -> bytes:
        """The packet of the frame record at ``offset``; RecordingError if none verifies there."""
        found = self._record_at(offset, self.size)
        if found is None or found[0].sync != FRAME_SYNC:
            raise RecordingError(f"{self.path}: no intact frame record at offset {offset}")
        return found[1]

    def first_timestamp_us(self) -> Optional[int]:
        for kind, item in self.records():
            if kind == "frame":
                return item.timestamp_us
        return None

    # --- the index ---------------------------------------------------------------------------

    def index(self) -> Optional[tuple[list[IndexEntry], int]]:
        """(every indexed frame, where the unindexed tail starts), or None if the chain is unusable."""
        last = self._last_index()
        if last is None:
            return None
        chunks: list[list[IndexEntry]] = []
        offset, seen = last, set()
        while offset:
            if offset in seen or offset < self.data_start:
                return None
            seen.add(offset)
            found = self._record_at(offset, self.size)
            if found is None or found[0].sync != INDEX_SYNC:
                return None
            try:
                previous, chunk = unpack_index(found[1])
            except RecordingError:
                return None
            chunks.append(chunk)
            offset = previous
        return [e for chunk in reversed(chunks) for e in chunk], self._record_end(last)

    def _record_end(self, offset: int) -> int:
        self._file.seek(offset)
        header = unpack_record_header(self._file.read(RECORD_HEADER_SIZE))
        return offset + RECORD_HEADER_SIZE + header.length

    def _last_index(self) -> Optional[int]:
        end = self.size
        while end > self.data_start:
            start = max(self.data_start, end - _CHUNK)
            self._file.seek(start)
            chunk = self._file.read(end - start + RECORD_HEADER_SIZE)
            i = len(chunk)
            while True:
                i = chunk.rfind(INDEX_SYNC, 0, i)
                if i < 0:
                    break
                if start + i < end and self._record_at(start + i, self.size) is not None:
                    return start + i
            end = start
        return None

    def _regions(self, start_us, end_us) -> Optional[list[tuple[int, Optional[int]]]]:
        """Byte ranges that can hold frames in the time range: indexed ones, then the unindexed tail."""
        found = self.index()
        if found is None:
            return None
        entries, tail = found
        hits = [e.offset for e in entries if _in_range(e.timestamp_us, start_us, end_us)]
        offsets = [e.offset for e in entries]
        regions: list[tuple[int, Optional[int]]] = []
        if hits:
            regions.append((self._key_at_or_before(min(hits), offsets), max(hits) + 1))
        tail_start = self._key_at_or_before(tail, offsets) if tail < self.size else tail
        if regions and tail_start <= regions[-1][1]:
            regions[-1] = (min(regions[-1][0], tail_start), None)  # the tail's group begins in the range
        else:
            regions.append((tail_start, None))
        return regions

    def _peek_key(self, offset: int) -> bool:
        """Whether the frame record at ``offset`` holds a key frame, from its first bytes (unverified)."""
        self._file.seek(offset)
        head = self._file.read(RECORD_HEADER_SIZE + 44)
        return head[:4] == FRAME_SYNC and packet_kind(head[RECORD_HEADER_SIZE:])[0] != DELTA_KIND

    def _key_at_or_before(self, offset: int, indexed: list[int]) -> int:
        """Where to start reading so that the frame at ``offset`` can be decoded: the key frame at or
        before it, found through the index (sorted offsets of indexed frames); the first one if none."""
        if offset >= self.size or self._peek_key(offset):
            return offset
        i = bisect.bisect_left(indexed, offset)
        for j in range(i - 1, -1, -1):
            if self._peek_key(indexed[j]):
                return indexed[j]
        return min(indexed[0], offset) if indexed else offset


def _in_range(value: int, lo: Optional[int], hi: Optional[int]) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _find_all(data: bytes, needle: bytes) -> Iterator[int]:
    i = data.find(needle)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)
