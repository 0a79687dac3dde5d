"""Chunked frame transfer: the sender's and the receiver's state machines, with no I/O and no clock.

The link layer feeds them decoded messages and sends what they return; the rules are PROTOCOL.md
section 4. Keeping them pure makes every corner (loss, duplicates, a restarted peer) testable
without threads or timing.
"""
from __future__ import annotations

import math

from firmware_bridge.framing import crc32
from firmware_bridge.messages import STATUS_MASK_BITS, FrameBegin, FrameChunk, FrameStatus, XferState

MAX_CHUNKS = 0xFFFF
MAX_WINDOW = STATUS_MASK_BITS


class FrameReceiver:
    """Reassemble at most one incoming frame into a buffer of at most ``max_frame`` bytes."""

    def __init__(self, max_frame: int, max_chunk: int):
        self.max_frame = max_frame
        self.max_chunk = max_chunk
        self._cur: dict | None = None
        self._done: tuple | None = None  # (xfer, total, chunk_size, crc) of the last completed frame
        self.stats = {"frames": 0, "crc_mismatch": 0, "bad_chunks": 0, "duplicate_chunks": 0}

    def _status(self, xfer: int, state: int, seq: int) -> FrameStatus:
        cur = self._cur
        if state != XferState.RECEIVING or cur is None:
            nxt = 0xFFFF if state == XferState.COMPLETE else 0
            return FrameStatus(xfer, state, seq, nxt, 0)
        have, nxt = cur["have"], cur["next"]
        mask = 0
        for bit in range(STATUS_MASK_BITS):
            i = nxt + 1 + bit
            if i >= cur["n"]:
                break
            if have[i]:
                mask |= 1 << bit
        return FrameStatus(xfer, state, seq, nxt, mask)

    def on_begin(self, begin: FrameBegin, seq: int) -> FrameStatus:
        """Start or resume a transfer; always answered with a FRAME_STATUS."""
        key = (begin.xfer, begin.total, begin.chunk_size, begin.crc)
        cur = self._cur
        if cur is not None and cur["key"] == key:
            return self._status(begin.xfer, XferState.RECEIVING, seq)
        if self._done == key:
            return self._status(begin.xfer, XferState.COMPLETE, seq)
        if begin.total > self.max_frame:
            return self._status(begin.xfer, XferState.TOO_LARGE, seq)
        n = math.ceil(begin.total / begin.chunk_size) if begin.chunk_size else 0
        if begin.total == 0 or not 1 <= begin.chunk_size <= self.max_chunk or n > MAX_CHUNKS:
            return self._status(begin.xfer, XferState.BAD_PARAMS, seq)
        self._cur = {"key": key, "xfer": begin.xfer, "total": begin.total, "size": begin.chunk_size,
                     "crc": begin.crc, "n": n, "buf": bytearray(begin.total), "have": bytearray(n),
                     "next": 0, "count": 0}
        return self._status(begin.xfer, XferState.RECEIVING, seq)

    def on_chunk(self, chunk: FrameChunk, seq: int, reply: bool) -> tuple[FrameStatus | None, bytes | None]:
        """Store a chunk; return (status to send or None, the completed frame or None)."""
        cur = self._cur
        if cur is None or cur["xfer"] != chunk.xfer:
            if self._done is not None and self._done[0] == chunk.xfer:
                return (self._status(chunk.xfer, XferState.COMPLETE, seq) if reply else None), None
            return (self._status(chunk.xfer, XferState.UNKNOWN, seq) if reply else None), None
        i, size = chunk.index, cur["size"]
        expected = min(size, cur["total"] - i * size) if i < cur["n"] else -1
        if len(chunk.data) != expected:
            self.stats["bad_chunks"] += 1
        elif cur["have"][i]:
            self.stats["duplicate_chunks"] += 1
        else:
            cur["buf"][i * size:i * size + expected] = chunk.data
            cur["have"][i] = 1
            cur["count"] += 1
            while cur["next"] < cur["n"] and cur["have"][cur["next"]]:
                cur["next"] += 1
            if cur["count"] == cur["n"]:
                self._cur = None
                data = bytes(cur["buf"])
                if crc32(data) != cur["crc"]:
                    self.stats["crc_mismatch"] += 1
                    return self._status(chunk.xfer, XferState.CRC_MISMATCH, seq), None
                self._done = cur["key"]
                self.stats["frames"] += 1
                return self._status(chunk.xfer, XferState.COMPLETE, seq), data
        return (self._status(chunk.xfer, XferState.RECEIVING, seq) if reply else None), None

    def on_abort(self, xfer: int) -> None:
        if self._cur is not None and self._cur["xfer"] == xfer:
            self._cur = None

    @property
    def busy(self) -> bool:
        return self._cur is not None


class FrameSender:
    """Which chunks of one outgoing frame to send next, from the receiver's FRAME_STATUS replies.

    Selective repeat over an in-order link: a chunk is resent only when a status answering a poll
    sent *after* it shows it missing (a serial link never reorders, so it was lost), or after a
    timeout query. At most ``window`` chunk indexes past the first unacknowledged one are in play,
    so every status's 32-bit mask covers all chunks in flight.
    """

    def __init__(self, data: bytes, xfer: int, chunk_size: int, window: int):
        if not data:
            raise ValueError("cannot send an empty frame")
        self.data = bytes(data)
        self.xfer = xfer & 0xFFFF
        self.chunk_size = chunk_size
        self.n = math.ceil(len(data) / chunk_size)
        if self.n > MAX_CHUNKS:
            raise ValueError(f"frame of {len(data)} bytes needs more than {MAX_CHUNKS} chunks")
        self.window = max(1, min(window, MAX_WINDOW))
        self.crc = crc32(self.data)
        self.acked = bytearray(self.n)
        self.n_acked = 0
        self.sent_at = [-1] * self.n      # transmission stamp of each chunk's latest send; -1 = to send
        self._stamp = 0
        self._seq_stamp: dict[int, int] = {}
        self.answered = False             # a status arrived since the link last looked
        self.begun = False                # the receiver has answered a FRAME_BEGIN with RECEIVING
        self.done = False
        self.rejected: int | None = None  # XferState that makes the transfer hopeless
        self.sends = 0
        self.resends = 0
        self.losses = 0
        self.restarts = 0

    @property
    def base(self) -> int:
        for i in range(self.n):
            if not self.acked[i]:
                return i
        return self.n

    def begin(self) -> FrameBegin:
        return FrameBegin(self.xfer, len(self.data), self.chunk_size, self.crc)

    def chunk(self, index: int) -> FrameChunk:
        off = index * self.chunk_size
        return FrameChunk(self.xfer, index, self.data[off:off + self.chunk_size])

    def eligible(self) -> list[int]:
        """Chunk indexes that may be sent now, lowest first."""
        if not self.begun or self.done:
            return []
        base = self.base
        return [i for i in range(base, min(self.n, base + self.window))
                if not self.acked[i] and self.sent_at[i] < 0]

    def record_send(self, seq: int, index: int | None) -> None:
        """Note that a frame with header ``seq`` went out: chunk ``index``, or a FRAME_BEGIN (None)."""
        self._stamp += 1
        self._seq_stamp[seq & 0xFF] = self._stamp
        if index is not None:
            self.sends += 1
            if self.sent_at[index] == -2:
                self.resends += 1
            self.sent_at[index] = self._stamp

    def on_status(self, st: FrameStatus) -> bool:
        """Apply a status for this transfer; return True if it acknowledged anything new."""
        if st.xfer != self.xfer or self.done:
            return False
        self.answered = True
        if st.state == XferState.COMPLETE:
            self.done = True
            return True
        if st.state in (XferState.TOO_LARGE, XferState.BAD_PARAMS):
            self.rejected = st.state
            return False
        if st.state in (XferState.UNKNOWN, XferState.CRC_MISMATCH):
            self.restart()
            return False
        before = self.n_acked
        self.begun = True
        for i in range(min(st.next, self.n)):
            self._ack(i)
        for bit in range(STATUS_MASK_BITS):
            if st.mask >> bit & 1 and st.next + 1 + bit < self.n:
                self._ack(st.next + 1 + bit)
        polled = self._seq_stamp.get(st.echo_seq, 0)
        for i in range(self.n):
            if not self.acked[i] and 0 <= self.sent_at[i] <= polled:
                self.sent_at[i] = -2  # lost: send again
                self.losses += 1
        return self.n_acked > before

    def restart(self) -> None:
        """The receiver lost the transfer: begin again from nothing."""
        self.restarts += 1
        self.begun = False
        self.acked = bytearray(self.n)
        self.n_acked = 0
        self.sent_at = [-1] * self.n

    def expire(self) -> None:
        """No status came in time: send every chunk in flight again.

        Not counted in ``losses``: silence may be an outage rather than noise. A later status
        counts the chunks it shows missing.
        """
        for i in range(self.n):
            if not self.acked[i] and self.sent_at[i] >= 0:
                self.sent_at[i] = -2

    def suspend(self) -> None:
        """Forget what is in flight (a timeout, or the link dropped); a FRAME_BEGIN resumes from the receiver's state.

        Chunks sent before it and missing from the answering status are then marked lost.
        """
        self.begun = False

    def _ack(self, i: int) -> None:
        if not self.acked[i]:
            self.acked[i] = 1
            self.n_acked += 1

    @property
    def acked_bytes(self) -> int:
        if self.done:
            return len(self.data)
        last = self.n - 1
        full = self.n_acked - (1 if self.acked[last] else 0)
        return full * self.chunk_size + (len(self.data) - last * self.chunk_size if self.acked[last] else 0)


CHUNK_OVERHEAD = 4 + 4 + 4 + 2 + 1  # header, chunk header, CRC, COBS code bytes, delimiter (approx.)
_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1020)


class ChunkSizer:
    """Pick the chunk size with the best expected goodput for the byte error rate seen so far.

    A chunk of c data bytes costs c + overhead bytes on the wire and arrives intact with probability
    (1 - e)^(c + overhead) for a byte error rate e, estimated from the share of chunks lost.
    """

    def __init__(self, error_rate: float = 0.0, smoothing: float = 0.5):
        self.error_rate = error_rate
        self.smoothing = smoothing

    def observe(self, sent: int, lost: int, chunk_size: int) -> None:
        if sent <= 0:
            return
        e = self.estimate(sent, lost, chunk_size)
        self.error_rate += self.smoothing * (e - self.error_rate)

    @staticmethod
    def estimate(sent: int, lost: int, chunk_size: int) -> float:
        """Byte error rate that explains ``lost`` of ``sent`` chunks of ``chunk_size`` bytes."""
        loss = min(lost / sent, 0.999) if sent > 0 else 0.0
        return 1.0 - (1.0 - loss) ** (1.0 / (chunk_size + CHUNK_OVERHEAD))

    def choose(self, max_chunk: int, error_rate: float | None = None) -> int:
        e = self.error_rate if error_rate is None else error_rate

        def goodput(c: int) -> float:
            w = c + CHUNK_OVERHEAD
            return c / w * (1.0 - e) ** w

        sizes = [c for c in _CANDIDATES if c <= max_chunk] or [max_chunk]
        if max_chunk not in sizes:
            sizes.append(max_chunk)
        return max(sizes, key=goodput)
