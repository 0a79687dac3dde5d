"""The host side of the link: a thread-based ``Link`` over any pyserial port or URL.

One reader thread decodes frames, answers what the protocol answers by itself (HELLO, ACK,
FRAME_STATUS, REQUEST) and keeps heartbeats going; the application's ``LinkHandler`` runs on a
second thread so that a handler may itself block (a trigger that captures and calls
``send_frame``). ``send`` and ``send_frame`` block their caller until the peer acknowledged, or
the retries ran out.

The jobs live in their own classes and the link only wires them together and dispatches what
arrives: ``port.ReconnectingPort`` (the port, reopened after a failure), ``control.ReliableChannel``
(stop-and-wait control messages, duplicates, requests), ``windowed.WindowedTransfer`` (sending
compressed frames), ``transfer.FrameReceiver`` (receiving them) and ``handler.EventDispatcher``
(the application's events).
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable

from firmware_bridge.control import ReliableChannel
from firmware_bridge.errors import LinkTimeout
from firmware_bridge.framing import FLAG_REPLY, MAX_PAYLOAD, FrameDecoder
from firmware_bridge.handler import EventDispatcher, LinkHandler, handler_method
from firmware_bridge.messages import Ack, AckResult, FrameChunk, Heartbeat, Hello, MsgType, Request, Status, unpack_message
from firmware_bridge.port import READ_ERRORS, FrameWriter, ReconnectingPort, ReplyTimer, open_port
from firmware_bridge.transfer import MAX_WINDOW, ChunkSizer, FrameReceiver
from firmware_bridge.windowed import WindowedTransfer

log = logging.getLogger("firmware_bridge")

ROLE_CODES = {"host": 0, "device": 1}
_EVENTS = {MsgType.TRIGGER: "on_trigger", MsgType.SET_QUALITY: "on_set_quality", MsgType.TELEMETRY: "on_telemetry",
           MsgType.STATUS: "on_status"}
_COUNTERS = ("frames_tx", "bytes_tx", "messages_rx", "malformed", "duplicates", "events_dropped", "transfers_ok",
             "transfers_failed", "chunks_sent", "chunks_resent", "rechunks", "timeouts", "port_errors", "reconnects")


class Link:
    """A framed, acknowledged message link to a microcontroller (or to a host, with ``role="device"``).

    ``port`` is a port name or pyserial URL (reopened after a failure) or an open serial-like
    object. ``handler`` (a ``LinkHandler``) receives message objects from
    ``firmware_bridge.messages`` and received frames, and answers the peer's requests.

    ``window``: chunks in flight (at most 32); ``chunk_size``: fixed chunk size, or None to adapt
    it to the measured error rate; ``retries`` and ``link_timeout``: a transfer fails after that
    many consecutive unanswered polls once the peer has been silent that long; ``latency``: the
    reply allowance until round trips have been measured; ``receiver``: a ``FrameReceiver`` to
    share across links, so that an incoming transfer survives a reconnection.
    """

    def __init__(self, port: str | Any, baudrate: int = 115200, *, handler: LinkHandler | None = None,
                 role: str = "host", name: str = "", window: int = 16, chunk_size: int | None = None,
                 max_frame: int = 1 << 20, max_payload: int = MAX_PAYLOAD, heartbeat_interval: float = 2.0,
                 latency: float = 0.05, retries: int = 8, link_timeout: float = 2.0, poll_every: int = 1,
                 reconnect: bool = True, receiver: FrameReceiver | None = None, start: bool = True):
        if role not in ROLE_CODES:
            raise ValueError(f"role must be one of {sorted(ROLE_CODES)}")
        self.handler = handler if handler is not None else LinkHandler()
        self.role, self.name = role, name
        self.window = max(1, min(int(window), MAX_WINDOW))
        self.max_payload = max(64, min(int(max_payload), MAX_PAYLOAD))
        self.heartbeat_interval = heartbeat_interval
        self.boot_id = random.randrange(1, 0x10000)
        self.peer: Hello | None = None

        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._port = ReconnectingPort(port, baudrate, self._counters, reconnect)
        self._writer = FrameWriter(self._port)
        timer = ReplyTimer(self._port, latency)
        self._control = ReliableChannel(self._writer, timer, self._counters, retries)
        self._transfer = WindowedTransfer(self._writer, timer, self._counters, self.wait_peer, window=self.window,
                                          chunk_size=chunk_size, max_payload=self.max_payload, retries=retries,
                                          link_timeout=link_timeout, poll_every=max(1, int(poll_every)))
        self._decoder = FrameDecoder(self.max_payload)
        self._receiver = receiver or FrameReceiver(max_frame, self.max_payload - FrameChunk.HEADER)
        self._events = EventDispatcher(self._counters)
        self._cond = threading.Condition()  # guards ``peer``
        self._stop = threading.Event()
        self._last_rx = 0.0
        self._next_hello = 0.0
        self._next_heartbeat = 0.0
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        if start:
            self.start()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "Link":
        """Start the reader and event threads and announce this side with a HELLO."""
        if self._threads:
            return self
        for target, name in ((self._read_loop, "bridge-reader"), (self._event_loop, "bridge-events")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        """Stop the threads and close the port (only if this link opened it)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        self._port.close()

    def __enter__(self) -> "Link":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public operations ---------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The port name or URL this link opened (and reopens), or None for a caller's port object."""
        return self._port.url

    @property
    def sizer(self) -> ChunkSizer:
        """The chunk sizer of outgoing transfers (what it learnt of the line's error rate)."""
        return self._transfer.sizer

    @property
    def peer_alive(self) -> bool:
        """True when a valid frame arrived within three heartbeat intervals (at least 3 s)."""
        return self._last_rx > 0 and time.monotonic() - self._last_rx < max(3.0, 3 * self.heartbeat_interval)

    @property
    def stats(self) -> dict:
        """Counters of frames, errors, retransmissions and transfers since the link started."""
        out = dict(self._counters)
        out.update({f"rx_{k}": v for k, v in self._decoder.stats.items()})
        out.update({f"reassembly_{k}": v for k, v in self._receiver.stats.items()})
        return out

    @property
    def events_waiting(self) -> int:
        """Handler calls queued for the event thread (at most 64)."""
        return self._events.waiting

    def wait_peer(self, timeout: float = 5.0) -> Hello:
        """Return the peer's HELLO, waiting up to ``timeout`` seconds for it; raise LinkTimeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.peer is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkTimeout(f"no answer from the peer within {timeout:g} s")
                self._cond.wait(min(left, 0.1))
            return self.peer

    def send(self, msg, reliable: bool = True, timeout: float = 5.0) -> bool:
        """Send a control message; if reliable, resend until the peer ACKs it OK (True) or give up (False)."""
        return self._control.send(msg, reliable, timeout)

    def request(self, what: int, timeout: float = 5.0):
        """Ask the peer for a HELLO, TELEMETRY or STATUS message and return it; raise LinkTimeout.

        The answer is an ordinary (unacknowledged) message, so a lost answer is asked for again.
        """
        return self._control.request(what, timeout)

    def send_frame(self, data: bytes, timeout: float = 30.0,
                   progress: Callable[[int, int], None] | None = None) -> bool:
        """Transfer ``data`` in acknowledged chunks; True once the peer has it bit-exact.

        False when the deadline or the retry limit (consecutive timeouts without progress) is hit;
        calling again with the same bytes resumes where the receiver stopped. Raises
        FrameRejected when the peer can never accept the frame (too large, bad parameters).
        """
        return self._transfer.send_frame(data, timeout, progress)

    def drop_pending(self) -> None:
        """Give up a frame that failed (no resume) and let the peer free its buffer (FRAME_ABORT)."""
        self._transfer.drop_pending()

    # -- reading -------------------------------------------------------------------------------

    def _hello(self) -> Hello:
        return Hello(ROLE_CODES[self.role], self.max_payload, self._receiver.max_frame, self.window,
                     self.boot_id, self.name)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read()
            except READ_ERRORS as exc:
                if self._stop.is_set():
                    break
                self._port.failed(exc)
                continue
            if data is None:  # no port: reopen it when it was ours
                if self._port.reopen():
                    self._decoder = FrameDecoder(self.max_payload)
                    self._writer.send_msg(self._hello(), FLAG_REPLY)  # the peer may have restarted meanwhile
                self._stop.wait(0.05)
                continue
            if data:
                for frame in self._decoder.feed(data):
                    try:
                        self._handle(frame)
                    except Exception:  # noqa: BLE001 - a bad frame must never kill the reader
                        log.exception("error handling a %s frame", frame.type)
            self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if self.peer is None and now >= self._next_hello:
            self._writer.send_msg(self._hello(), FLAG_REPLY)
            self._next_hello = now + 1.0
        if self.heartbeat_interval and now >= self._next_heartbeat:
            if self._next_heartbeat:
                self._writer.send_msg(Heartbeat(int((now - self._started) * 1000)))
            self._next_heartbeat = now + self.heartbeat_interval

    def _handle(self, frame) -> None:
        send = self._writer.send_msg
        try:
            msg = unpack_message(frame.type, frame.payload)
        except ValueError as exc:
            self._counters["malformed"] += 1
            log.debug("dropped frame type 0x%02x: %s", frame.type, exc)
            if frame.reply_requested and frame.type not in (MsgType.FRAME_BEGIN, MsgType.FRAME_CHUNK):
                result = AckResult.UNSUPPORTED if "unknown" in str(exc) else AckResult.INVALID
                send(Ack(frame.seq, result))
            return
        self._last_rx = time.monotonic()
        self._counters["messages_rx"] += 1
        t = frame.type
        if t == MsgType.FRAME_CHUNK:
            status, data = self._receiver.on_chunk(msg, frame.seq, frame.reply_requested)
            if status is not None:
                send(status)
            if data is not None:
                self._emit("on_frame", data)
            return
        if t == MsgType.FRAME_STATUS:
            self._transfer.on_status(msg)
            return
        if t == MsgType.FRAME_BEGIN:
            send(self._receiver.on_begin(msg, frame.seq))
            return
        if t == MsgType.FRAME_ABORT:
            self._receiver.on_abort(msg.xfer)
            return
        if t == MsgType.ACK:
            self._control.on_ack(msg.seq, msg.result)
            return
        if t == MsgType.HELLO:
            with self._cond:
                if self.peer is None or self.peer.boot_id != msg.boot_id:
                    self._control.peer_restarted()
                self.peer = msg
                self._cond.notify_all()
            self._control.record(t, msg)
            if frame.reply_requested:
                send(self._hello())
            self._emit("on_hello", msg)
            self._emit("on_message", msg)
            return
        if frame.reply_requested:
            duplicate = self._control.accept(frame.seq)
            result = self._answer(msg) if t == MsgType.REQUEST else AckResult.OK
            send(Ack(frame.seq, result))
            if duplicate:
                return
        elif t == MsgType.REQUEST:
            self._answer(msg)
        self._control.record(t, msg)
        if t in _EVENTS:
            self._emit(_EVENTS[t], msg)
        self._emit("on_message", msg)

    def _answer(self, req: Request) -> int:
        """Send what a REQUEST asks for; return the ACK result."""
        if req.what == MsgType.HELLO:
            self._writer.send_msg(self._hello())
        elif req.what == MsgType.STATUS:
            values = {"role": self.role, "uptime_s": f"{time.monotonic() - self._started:.0f}"}
            values.update(self.handler.status() or {})
            self._writer.send_msg(Status(values))
        else:
            telemetry = self.handler.telemetry() if req.what == MsgType.TELEMETRY else None
            if telemetry is None:
                return AckResult.UNSUPPORTED
            self._writer.send_msg(telemetry)
        return AckResult.OK

    # -- events --------------------------------------------------------------------------------

    def _emit(self, event: str, arg) -> None:
        self._events.emit(handler_method(self.handler, event), arg)

    def _event_loop(self) -> None:
        self._events.run(self._stop)


__all__ = ["Link", "LinkHandler", "open_port"]
