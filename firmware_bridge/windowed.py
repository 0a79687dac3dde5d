"""Sending compressed frames (PROTOCOL.md 5.2): windowed chunks, timeouts, resume, chunk sizing.

``WindowedTransfer`` drives one ``transfer.FrameSender`` at a time over a ``FrameWriter``: it
sends what the window allows, waits for FRAME_STATUS answers (``on_status``, called by the link's
reader), times out and probes, shrinks the chunks on a noisy line, and keeps a failed frame so
that sending the same bytes again resumes it.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Callable

from firmware_bridge.errors import FrameRejected, LinkTimeout
from firmware_bridge.framing import FLAG_REPLY
from firmware_bridge.messages import FrameAbort, FrameChunk, FrameStatus, Hello, MsgType, XferState
from firmware_bridge.port import FrameWriter, ReplyTimer
from firmware_bridge.transfer import ChunkSizer, FrameSender

_OUTAGE = 0.5  # seconds without any answer that make a link drop rather than noise (at least)


class WindowedTransfer:
    """The sender of compressed frames, one at a time.

    ``window``: chunks in flight; ``chunk_size``: fixed, or None to adapt it to the measured error
    rate; ``max_payload``: this side's payload limit; ``retries`` and ``link_timeout``: a transfer
    fails after that many consecutive unanswered polls once the peer has been silent that long;
    ``poll_every``: REPLY on every n-th chunk of a burst (and its last); ``wait_peer(timeout)``
    returns the peer's HELLO or raises LinkTimeout.
    """

    def __init__(self, writer: FrameWriter, timer: ReplyTimer, counters: dict, wait_peer: Callable[[float], Hello],
                 *, window: int, chunk_size: int | None, max_payload: int, retries: int, link_timeout: float,
                 poll_every: int):
        self.writer = writer
        self.timer = timer
        self.wait_peer = wait_peer
        self.window, self.chunk_size, self.max_payload = window, chunk_size, max_payload
        self.retries, self.link_timeout, self.poll_every = retries, link_timeout, poll_every
        self.sizer = ChunkSizer()
        self._counters = counters
        self._xfer_id = random.randrange(0x10000)
        self._send_lock = threading.Lock()  # one frame transfer at a time
        self._cond = threading.Condition()
        self._tx: FrameSender | None = None
        self._pending: FrameSender | None = None
        self._poll_seq: int | None = None
        self._poll_deadline: float | None = None
        self._poll_sent: dict[int, float] = {}

    def send_frame(self, data: bytes, timeout: float = 30.0,
                   progress: Callable[[int, int], None] | None = None) -> bool:
        """Transfer ``data`` in acknowledged chunks; True once the peer has it bit-exact (see ``Link.send_frame``)."""
        data = bytes(data)
        if not data:
            raise ValueError("cannot send an empty frame")
        deadline = time.monotonic() + timeout
        with self._send_lock:
            try:
                peer = self.wait_peer(max(0.0, deadline - time.monotonic()))
            except LinkTimeout:
                self._counters["transfers_failed"] += 1
                return False
            if peer.max_frame and len(data) > peer.max_frame:
                raise FrameRejected(f"frame of {len(data)} bytes exceeds the peer's limit of {peer.max_frame}")
            tx = self._pending if self._pending is not None and self._pending.data == data else None
            if tx is None:
                tx = self._new_sender(data, peer)
            else:
                tx.suspend()
            ok = self._run(tx, peer, deadline, progress)
            self._pending = None if ok else tx
            self._counters["transfers_ok" if ok else "transfers_failed"] += 1
            return ok

    def drop_pending(self) -> None:
        """Give up a frame that failed (no resume) and let the peer free its buffer (FRAME_ABORT)."""
        with self._send_lock:
            tx, self._pending = self._pending, None
        if tx is not None:
            self.writer.send_msg(FrameAbort(tx.xfer, 0))

    def on_status(self, msg: FrameStatus) -> None:
        """A FRAME_STATUS arrived (the link's reader calls this)."""
        with self._cond:
            tx = self._tx
            sent = self._poll_sent.pop(msg.echo_seq, None)
            if sent is not None:
                self.timer.status_arrived(sent)
            if tx is not None and msg.xfer == tx.xfer:
                tx.on_status(msg)
                if msg.echo_seq == self._poll_seq or not tx.begun or tx.rejected is not None:
                    self._poll_deadline = None
            self._cond.notify_all()

    # -- the engine ----------------------------------------------------------------------------

    def _new_sender(self, data: bytes, peer: Hello, chunk: int | None = None) -> FrameSender:
        max_chunk = max(16, min(peer.max_payload or 64, self.max_payload) - FrameChunk.HEADER)
        if chunk is None:
            chunk = min(self.chunk_size, max_chunk) if self.chunk_size else self.sizer.choose(max_chunk)
        window = min(self.window, max(1, peer.window or 1))
        self._xfer_id = (self._xfer_id + 1) & 0xFFFF
        return FrameSender(data, self._xfer_id, chunk, window)

    def _run(self, tx: FrameSender, peer: Hello, deadline: float, progress) -> bool:
        retries, scale, reported, last_answer = 0, 1.0, -1, time.monotonic()
        with self._cond:
            self._tx, self._poll_seq, self._poll_deadline = tx, None, None
        try:
            while True:
                out: list[tuple[int, bytes, int, int]] = []
                with self._cond:
                    now = time.monotonic()
                    if tx.done or tx.rejected is not None:
                        break
                    if now >= deadline:
                        return False
                    if self._poll_deadline is not None and now >= self._poll_deadline:
                        self._counters["timeouts"] += 1
                        retries += 1
                        scale = min(scale * 1.5, 8.0)
                        self._poll_deadline = None
                        if retries > self.retries and now - last_answer >= self.link_timeout:
                            return False  # the retry limit, and the peer silent for link_timeout
                        if tx.begun and retries == 1:
                            tx.expire()  # a lost answer, most likely: resend what is in flight
                        else:
                            tx.suspend()  # silence goes on: probe with a short FRAME_BEGIN instead
                    if not tx.begun and self._poll_deadline is None:
                        seq = self.writer.next_seq()
                        tx.record_send(seq, None)
                        out.append((MsgType.FRAME_BEGIN, tx.begin().pack(), FLAG_REPLY, seq))
                        self._poll_seq = seq
                    elif tx.begun:
                        batch = tx.eligible()
                        for k, index in enumerate(batch):
                            seq = self.writer.next_seq()
                            poll = (k + 1) % self.poll_every == 0 or k == len(batch) - 1
                            tx.record_send(seq, index)
                            out.append((MsgType.FRAME_CHUNK, tx.chunk(index).pack(), FLAG_REPLY if poll else 0,
                                        seq))
                            if poll:
                                self._poll_seq = seq
                        self._counters["chunks_sent"] += len(batch)
                    acked_before = tx.n_acked
                for type_, payload, flags, seq in out:
                    end = self.writer.send(type_, payload, flags, seq)
                    if flags & FLAG_REPLY:
                        self._poll_sent[seq] = end
                with self._cond:
                    if (out and out[-1][2] & FLAG_REPLY) or self._poll_deadline is None:
                        # A deadline always runs while waiting, so a lost or misread answer costs a
                        # timeout, never a hang.
                        self._poll_deadline = self.timer.deadline(scale)
                    wait_until = min(deadline, self._poll_deadline or deadline)
                    while (not tx.done and tx.rejected is None and tx.n_acked == acked_before and tx.begun
                           and not tx.eligible() and time.monotonic() < wait_until):
                        self._cond.wait(max(0.0, wait_until - time.monotonic()))
                    if not tx.begun and self._poll_deadline is not None:
                        self._cond.wait(max(0.0, min(wait_until, self._poll_deadline) - time.monotonic()))
                    smaller = None
                    if tx.n_acked > acked_before or tx.done or tx.answered:
                        # Silence longer than a whole window takes on the wire: the link was down.
                        outage = max(_OUTAGE, 2 * tx.window * (tx.chunk_size + 16) * self.writer.port.byte_time)
                        if time.monotonic() - last_answer > outage:
                            tx.sends = tx.losses = 0  # losses during an outage say nothing of the noise
                        else:
                            smaller = self._smaller_chunk(tx)
                        retries, scale, last_answer = 0, 1.0, time.monotonic()
                        tx.answered = False
                    acked_bytes = tx.acked_bytes
                    if smaller:
                        # Far more chunks lost than this size can afford: start over with smaller ones.
                        self.sizer.observe(tx.sends, tx.losses, tx.chunk_size)
                        self._counters["chunks_resent"] += tx.resends
                        data = tx.data
                        tx = self._new_sender(data, peer, smaller)
                        self._tx, self._poll_seq, self._poll_deadline = tx, None, None
                        self._counters["rechunks"] += 1
                        reported = -1
                if progress is not None and acked_bytes != reported:
                    reported = acked_bytes
                    progress(reported, len(tx.data))
            if tx.rejected is not None:
                raise FrameRejected(f"the peer rejected the frame: {XferState.NAMES[tx.rejected]}")
            return True
        finally:
            with self._cond:
                self._tx, self._poll_seq, self._poll_deadline = None, None, None
            self._counters["chunks_resent"] += tx.resends
            if tx.sends:
                self.sizer.observe(tx.sends, tx.losses, tx.chunk_size)

    def _smaller_chunk(self, tx: FrameSender) -> int | None:
        """A chunk size at most half the current one, if this transfer's losses call for it."""
        if self.chunk_size or tx.done or tx.sends < 8 or tx.n_acked * 2 >= tx.n:
            return None
        e = ChunkSizer.estimate(tx.sends, tx.losses, tx.chunk_size)
        best = self.sizer.choose(tx.chunk_size, e)
        return best if best * 2 <= tx.chunk_size else None


__all__ = ["WindowedTransfer"]
