"""A bounded on-disk queue of encoded frames that survives restarts: store-and-forward for outages.

Frames are appended to segment files (plain concatenated container packets, so each is
self-delimiting and CRC-checked) and removed when the server acknowledges them. Past the size
limit the oldest segment is deleted and its frames are counted as dropped. Appending to a few
large files instead of writing one file per frame spares SD cards. After a crash, a torn last
packet is cut off at load; frames that were acknowledged but not yet deleted are sent again and
the server recognises them as duplicates.

In stream mode a delta frame is useless without the frames before it back to a key frame, so the
spool keeps that dependency: when it drops frames, it also drops the delta frames that follow them up
to the next key frame it holds, and if it holds none, it refuses delta frames (``admit``) until a key
frame arrives; the sender asks the encoder for one. Frames are never reordered. Appends reach the operating system at once (a crash of
the service loses nothing) but are synced to the medium only when a segment is closed, so a power
cut can cost the last few seconds of an outage; syncing every frame would cost the card more.
"""
from __future__ import annotations

import bisect
import logging
import os
import pathlib
import threading
from dataclasses import dataclass, field
from typing import Iterator, Optional

from edgecodec import bitstream
from edgecodec.bitstream import Kind
from edgecodec.errors import BitstreamError, EdgecodecError

log = logging.getLogger(__name__)

SUFFIX = ".spool"
ACKED_FILE = "acked"


@dataclass
class _Segment:
    path: pathlib.Path
    size: int = 0
    seqs: list = field(default_factory=list)  # sequence numbers, increasing
    spans: list = field(default_factory=list)  # (offset, length) per frame
    keys: list = field(default_factory=list)  # per frame: a key frame (True) or a delta frame
    start: int = 0  # index of the first unacknowledged frame

    @property
    def pending(self) -> int:
        return len(self.seqs) - self.start

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else -1


class Spool:
    """Append in sequence order, read in order from any point, acknowledge to delete. Thread-safe."""

    def __init__(self, directory, max_bytes: int, segment_bytes: Optional[int] = None):
        self.dir = pathlib.Path(directory)
        self.max_bytes = int(max_bytes)
        self.segment_bytes = int(segment_bytes or max(64 << 10, min(8 << 20, self.max_bytes // 8)))
        self._segments: list[_Segment] = []
        self._writer = None
        self._lock = threading.RLock()
        self.dropped = 0  # frames deleted unsent because the spool was full (or their reference was)
        self.broken = False  # frames were dropped and no key frame came since: delta frames are refused
        self._acked = -1

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> "Spool":
        """Load what a previous run left, cutting off a torn last packet."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgecodecError(f"cannot create spool folder {self.dir}: {exc.strerror}") from None
        try:
            self._acked = int((self.dir / ACKED_FILE).read_text())
        except (OSError, ValueError):
            self._acked = -1
        last = self._acked
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            seg = self._scan(path, last)
            if seg.seqs:
                self._segments.append(seg)
                last = seg.last
            else:
                path.unlink()
        if len(self):
            log.info("spool %s holds %d frames (%.1f MB) from an earlier run", self.dir, len(self),
                     self.bytes / 1e6)
        return self

    def _scan(self, path: pathlib.Path, last: int) -> _Segment:
        """Index one segment, skipping frames at or below ``last`` (acknowledged, or out of order)."""
        seg = _Segment(path)
        with open(path, "rb") as f:
            offset = 0
            while True:
                try:
                    packet = bitstream.read_packet(f)
                    if packet is None:
                        break
                    header, _ = bitstream.unpack(packet)
                except BitstreamError as exc:
                    log.warning("spool %s: cutting a damaged tail at byte %d (%s)", path.name, offset, exc)
                    break
                if header.sequence > last:
                    seg.seqs.append(header.sequence)
                    seg.spans.append((offset, len(packet)))
                    seg.keys.append(header.kind != Kind.DELTA)
                    last = header.sequence
                offset += len(packet)
        if offset != path.stat().st_size:
            os.truncate(path, offset)
        seg.size = offset
        return seg

    def close(self) -> None:
        """Flush, and record what was acknowledged so a restart does not send it again."""
        with self._lock:
            self._close_writer()
            self._write_acked()

    def _write_acked(self) -> None:
        if self._acked >= 0:
            tmp = self.dir / (ACKED_FILE + ".tmp")
            tmp.write_text(str(self._acked))
            os.replace(tmp, self.dir / ACKED_FILE)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None

    # --- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return sum(s.pending for s in self._segments)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    def last_sequence(self) -> Optional[int]:
        with self._lock:
            for seg in reversed(self._segments):
                if seg.pending:
                    return seg.last
            return None

    def next_after(self, sequence: Optional[int]) -> Optional[tuple[int, bytes]]:
        """The first frame with a sequence above ``sequence`` (None = from the start), or None."""
        with self._lock:
            for seg in self._segments:
                if not seg.pending or (sequence is not None and seg.last <= sequence):
                    continue
                i = seg.start if sequence is None else max(seg.start, bisect.bisect_right(seg.seqs, sequence))
                if i < len(seg.seqs):
                    offset, length = seg.spans[i]
                    with open(seg.path, "rb") as f:
                        f.seek(offset)
                        return seg.seqs[i], f.read(length)
            return None

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Every frame still held, oldest first."""
        seq = None
        while (item := self.next_after(seq)) is not None:
            seq = item[0]
            yield item

    # --- changes -------------------------------------------------------------------------------

    def admit(self, key: bool) -> bool:
        """Whether a frame may go on (to the spool or the link): False for a delta frame after frames were
        dropped and before the next key frame (counted as dropped). A key frame mends the chain."""
        with self._lock:
            if key:
                self.broken = False
                return True
            if self.broken:
                self.dropped += 1
                return False
            return True

    def append(self, sequence: int, packet: bytes, key: Optional[bool] = None) -> int:
        """Store one frame (sequences must increase); return how many frames this dropped: old ones it
        pushed out with the delta frames that needed them, or this one if it is a delta frame that
        cannot be decoded any more (see ``admit``). ``key``: None reads it from the packet."""
        if key is None:
            key = _is_key(packet)
        with self._lock:
            last = self.last_sequence()
            if last is not None and sequence <= last:
                raise EdgecodecError(f"spool: sequence {sequence} does not follow {last}")
            if not self.admit(key):
                return 1
            seg = self._segments[-1] if self._segments and self._writer is not None else None
            if seg is None or seg.size + len(packet) > self.segment_bytes and seg.seqs:
                self._close_writer()
                seg = _Segment(self.dir / f"{sequence:020d}{SUFFIX}")
                self._segments.append(seg)
                self._writer = open(seg.path, "ab")
            self._writer.write(packet)
            self._writer.flush()  # to the OS now: a killed process must not lose buffered frames
            seg.seqs.append(sequence)
            seg.spans.append((seg.size, len(packet)))
            seg.keys.append(key)
            seg.size += len(packet)
            return self._enforce_limit()

    def _enforce_limit(self) -> int:
        dropped = 0
        while self._segments and sum(s.size for s in self._segments) > self.max_bytes:
            if len(self._segments) == 1:
                self._close_writer()
            seg = self._segments.pop(0)
            dropped += seg.pending
            seg.path.unlink(missing_ok=True)
            log.warning("spool full (%.1f MB): dropped the %d oldest frames", self.max_bytes / 1e6,
                        seg.pending)
        self.dropped += dropped
        if dropped:
            dropped += self._drop_orphans()
        return dropped

    def _drop_orphans(self) -> int:
        """After frames were dropped: drop the delta frames held before the first key frame held (their
        chain lost a frame); with no key frame held, drop all and refuse delta frames until one comes."""
        for seg in self._segments:
            for i in range(seg.start, len(seg.seqs)):
                if seg.keys[i]:
                    removed = self.ack(seg.seqs[i] - 1) if i > seg.start or seg is not self._segments[0] \
                        else 0
                    break
            else:
                continue
            break
        else:
            last = self.last_sequence()
            removed = self.ack(last) if last is not None else 0
            self.broken = True
        if removed:
            log.warning("spool: dropped %d delta frames whose reference frames were dropped", removed)
            self.dropped += removed
            self._write_acked()  # a restart must not send them either
        return removed

    def ack(self, sequence: int) -> int:
        """Forget every frame up to ``sequence`` (the server has it); return how many were removed."""
        with self._lock:
            removed = 0
            self._acked = max(self._acked, sequence)
            while self._segments:
                seg = self._segments[0]
                i = bisect.bisect_right(seg.seqs, sequence)
                if i <= seg.start:
                    break
                removed += i - seg.start
                seg.start = i
                if seg.pending:
                    break
                if seg is self._segments[-1]:
                    self._close_writer()
                self._segments.pop(0)
                seg.path.unlink(missing_ok=True)
            return removed


def _is_key(packet: bytes) -> bool:
    """Whether a packet is not a delta frame (the header's kind byte, without unpacking it)."""
    return len(packet) < 6 or packet[5] != Kind.DELTA
