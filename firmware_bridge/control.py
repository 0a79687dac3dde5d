"""Reliable control messages (PROTOCOL.md 4.2): stop-and-wait sending, duplicate detection, requests.

``ReliableChannel`` sends a message with ``REPLY`` and resends the identical frame until the ACK
with its ``seq`` arrives; on the receiving side it tells a retransmission from a new message; and
it keeps the latest message of each type so that ``request`` can wait for the answer it asked for.
No threads of its own: the link's reader calls ``on_ack``, ``accept`` and ``record``.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any

from firmware_bridge.errors import LinkTimeout, ProtocolError
from firmware_bridge.framing import FLAG_REPLY
from firmware_bridge.messages import AckResult, MsgType, Request
from firmware_bridge.port import FrameWriter, ReplyTimer

RELIABLE_TYPES = {MsgType.HEARTBEAT, MsgType.TRIGGER, MsgType.SET_QUALITY, MsgType.TELEMETRY, MsgType.REQUEST,
                  MsgType.STATUS}


class ReliableChannel:
    """Stop-and-wait control messages over a ``FrameWriter``; ``retries`` resends at most per message."""

    def __init__(self, writer: FrameWriter, timer: ReplyTimer, counters: dict, retries: int = 8):
        self.writer = writer
        self.timer = timer
        self.retries = retries
        self._counters = counters
        self._rseq = random.randrange(256)
        self._lock = threading.Lock()  # one reliable message in flight (stop-and-wait)
        self._cond = threading.Condition()
        self._acks: dict[int, int] = {}
        self._peer_rseq: int | None = None
        self._latest: dict[int, tuple[int, Any]] = {}

    # -- sending -------------------------------------------------------------------------------

    def send(self, msg, reliable: bool = True, timeout: float = 5.0) -> bool:
        """Send a control message; if reliable, resend until the peer ACKs it OK (True) or give up (False)."""
        if not reliable or msg.TYPE not in RELIABLE_TYPES:
            self.writer.send_msg(msg)
            return True
        return self.send_reliable(msg, timeout) == AckResult.OK

    def send_reliable(self, msg, timeout: float) -> int | None:
        """Stop-and-wait: the peer's ACK result, or None when every retry went unanswered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            with self._cond:
                self._rseq = (self._rseq + 1) & 0xFF
                rseq = self._rseq
            payload = msg.pack()
            for attempt in range(self.retries + 1):
                if time.monotonic() >= deadline:
                    break
                with self._cond:
                    self._acks.pop(rseq, None)
                self.writer.send(msg.TYPE, payload, FLAG_REPLY, rseq)
                wait_until = min(deadline, self.timer.deadline(min(1.5 ** attempt, 8.0)))
                with self._cond:
                    while rseq not in self._acks and time.monotonic() < wait_until:
                        self._cond.wait(wait_until - time.monotonic())
                    result = self._acks.pop(rseq, None)
                if result is not None:
                    return result
                self._counters["timeouts"] += 1
            return None

    def request(self, what: int, timeout: float = 5.0):
        """Ask the peer for a HELLO, TELEMETRY or STATUS message and return it; raise LinkTimeout.

        The answer is an ordinary (unacknowledged) message, so a lost answer is asked for again.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkTimeout(f"no answer to the request within {timeout:g} s")
            with self._cond:
                before = self._latest.get(what, (0, None))[0]
            result = self.send_reliable(Request(what), left)
            if result is None:
                raise LinkTimeout(f"the peer did not acknowledge the request within {timeout:g} s")
            if result != AckResult.OK:
                raise ProtocolError(f"the peer cannot answer a request for message type 0x{what:02x}")
            wait_until = min(deadline, self.timer.deadline(4.0))
            with self._cond:
                while self._latest.get(what, (0, None))[0] == before and time.monotonic() < wait_until:
                    self._cond.wait(wait_until - time.monotonic())
                if self._latest.get(what, (0, None))[0] != before:
                    return self._latest[what][1]

    # -- receiving (called by the link's reader) -----------------------------------------------

    def on_ack(self, seq: int, result: int) -> None:
        with self._cond:
            self._acks[seq] = result
            self._cond.notify_all()

    def accept(self, seq: int) -> bool:
        """A reliable message with ``seq`` arrived (the caller ACKs it): True if it is a retransmission."""
        duplicate = seq == self._peer_rseq
        self._peer_rseq = seq
        if duplicate:
            self._counters["duplicates"] += 1
        return duplicate

    def peer_restarted(self) -> None:
        """A restarted peer counts its sequence numbers anew."""
        self._peer_rseq = None

    def record(self, type_: int, msg) -> None:
        """Remember the latest message of a type (what ``request`` waits for)."""
        with self._cond:
            count = self._latest.get(type_, (0, None))[0]
            self._latest[type_] = (count + 1, msg)
            self._cond.notify_all()


__all__ = ["RELIABLE_TYPES", "ReliableChannel"]
