"""The host side of the link: a thread-based ``Link`` over any pyserial port or URL.

One reader thread decodes frames, answers what the protocol answers by itself (HELLO, ACK,
FRAME_STATUS, REQUEST) and keeps heartbeats going; user callbacks run on a second thread so that
a callback may itself block (a trigger that captures and calls ``send_frame``). ``send`` and
``send_frame`` block their caller until the peer acknowledged, or the retries ran out.
"""
from __future__ import annotations

import logging
import os
import re
import queue
import random
import threading
import time
from typing import Any, Callable

import serial

from firmware_bridge.errors import FrameRejected, LinkTimeout, PortError, ProtocolError
from firmware_bridge.framing import FLAG_REPLY, MAX_PAYLOAD, FrameDecoder, encode_frame, max_wire_size
from firmware_bridge.messages import (Ack, AckResult, FrameAbort, FrameChunk, Heartbeat, Hello, MsgType, Request,
                                      SetQuality, Status, Telemetry, Trigger, XferState, unpack_message)
from firmware_bridge.transfer import MAX_WINDOW, ChunkSizer, FrameReceiver, FrameSender

log = logging.getLogger("firmware_bridge")

ROLE_CODES = {"host": 0, "device": 1}
_RELIABLE_TYPES = {MsgType.HEARTBEAT, MsgType.TRIGGER, MsgType.SET_QUALITY, MsgType.TELEMETRY, MsgType.REQUEST,
                   MsgType.STATUS}
_STATUS_WIRE = max_wire_size(10)
_REPLY_WIRE = _STATUS_WIRE + max_wire_size(64)  # the reply may wait behind a short frame
_EVENT_QUEUE = 64
_OUTAGE = 0.5  # seconds without any answer that make a link drop rather than noise (at least)


def open_port(url: str, baudrate: int, timeout: float = 0.02):
    """Open a port name or pyserial URL (``loop://``, ``socket://host:port``, ``/dev/ttyUSB0``)."""
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=5.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        code = getattr(exc, "errno", None)
        reason = os.strerror(code) if isinstance(code, int) else re.sub(r".*\[Errno \d+\] ", "", str(exc))
        raise PortError(f"cannot open {url}: {reason}") from None


class Link:
    """A framed, acknowledged message link to a microcontroller (or to a host, with ``role="device"``).

    ``port`` is a port name or pyserial URL (reopened after a failure) or an open serial-like
    object. Callbacks receive message objects from ``firmware_bridge.messages`` and run on the
    link's event thread, one at a time; at most 64 events wait, the oldest dropped beyond that.

    ``window``: chunks in flight (at most 32); ``chunk_size``: fixed chunk size, or None to adapt
    it to the measured error rate; ``retries`` and ``link_timeout``: a transfer fails after that
    many consecutive unanswered polls once the peer has been silent that long; ``latency``: the
    reply allowance until round trips have been measured.
    """

    def __init__(self, port: str | Any, baudrate: int = 115200, *, role: str = "host", name: str = "",
                 window: int = 16, chunk_size: int | None = None, max_frame: int = 1 << 20,
                 max_payload: int = MAX_PAYLOAD, heartbeat_interval: float = 2.0, latency: float = 0.05,
                 retries: int = 8, link_timeout: float = 2.0, poll_every: int = 1, reconnect: bool = True,
                 on_trigger: Callable[[Trigger], None] | None = None,
                 on_set_quality: Callable[[SetQuality], None] | None = None,
                 on_telemetry: Callable[[Telemetry], None] | None = None,
                 on_status: Callable[[Status], None] | None = None,
                 on_frame: Callable[[bytes], None] | None = None,
                 on_hello: Callable[[Hello], None] | None = None,
                 on_message: Callable[[Any], None] | None = None,
                 telemetry_provider: Callable[[], Telemetry] | None = None,
                 status_provider: Callable[[], dict] | None = None,
                 receiver: FrameReceiver | None = None, start: bool = True):
        if role not in ROLE_CODES:
            raise ValueError(f"role must be one of {sorted(ROLE_CODES)}")
        self.url = port if isinstance(port, str) else None
        self.baudrate = int(baudrate)
        self.role, self.name = role, name
        self.window = max(1, min(int(window), MAX_WINDOW))
        self.chunk_size = chunk_size
        self.max_payload = max(64, min(int(max_payload), MAX_PAYLOAD))
        self.heartbeat_interval = heartbeat_interval
        self.latency = latency
        self.retries = retries
        self.link_timeout = link_timeout
        self.poll_every = max(1, int(poll_every))
        self.reconnect = reconnect
        self.on_trigger, self.on_set_quality, self.on_telemetry = on_trigger, on_set_quality, on_telemetry
        self.on_status, self.on_frame, self.on_hello, self.on_message = on_status, on_frame, on_hello, on_message
        self.telemetry_provider, self.status_provider = telemetry_provider, status_provider
        self.boot_id = random.randrange(1, 0x10000)
        self.peer: Hello | None = None
        self.sizer = ChunkSizer()

        self._port = open_port(port, self.baudrate) if self.url else port
        self._byte_time = 10.0 / self.baudrate
        self._decoder = FrameDecoder(self.max_payload)
        # A caller may share one receiver across links, so a transfer survives a reconnection.
        self._receiver = receiver or FrameReceiver(max_frame, self.max_payload - FrameChunk.HEADER)
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()      # one frame transfer at a time
        self._reliable_lock = threading.Lock()  # one reliable control message in flight (stop-and-wait)
        self._events: queue.Queue = queue.Queue(maxsize=_EVENT_QUEUE)
        self._stop = threading.Event()
        self._seq = random.randrange(256)
        self._rseq = random.randrange(256)
        self._peer_rseq: int | None = None
        self._acks: dict[int, int] = {}
        self._latest: dict[int, tuple[int, Any]] = {}
        self._tx: FrameSender | None = None
        self._pending: FrameSender | None = None
        self._poll_seq: int | None = None
        self._poll_deadline: float | None = None
        self._xfer_id = random.randrange(0x10000)
        self._tx_free_at = 0.0
        self._poll_sent: dict[int, float] = {}
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._last_rx = 0.0
        self._next_hello = 0.0
        self._next_heartbeat = 0.0
        self._next_reopen = 0.0
        self._started = time.monotonic()
        self._counters = {"frames_tx": 0, "bytes_tx": 0, "messages_rx": 0, "malformed": 0, "duplicates": 0,
                          "events_dropped": 0, "transfers_ok": 0, "transfers_failed": 0, "chunks_sent": 0,
                          "chunks_resent": 0, "rechunks": 0, "timeouts": 0, "port_errors": 0, "reconnects": 0}
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
        self._drop_port()

    def _drop_port(self) -> None:
        """Forget the port; close it when this link opened it (a caller's object stays the caller's)."""
        port, self._port = self._port, None
        if port is not None and self.url is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - closing a broken port must not fail
                pass

    def __enter__(self) -> "Link":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public operations ---------------------------------------------------------------------

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
        if not reliable or msg.TYPE not in _RELIABLE_TYPES:
            self._send_frame_bytes(msg.TYPE, msg.pack(), 0, self._next_seq())
            return True
        return self._send_reliable(msg, timeout) == AckResult.OK

    def _send_reliable(self, msg, timeout: float) -> int | None:
        """Stop-and-wait: the peer's ACK result, or None when every retry went unanswered."""
        deadline = time.monotonic() + timeout
        with self._reliable_lock:
            with self._cond:
                self._rseq = (self._rseq + 1) & 0xFF
                rseq = self._rseq
            payload = msg.pack()
            for attempt in range(self.retries + 1):
                if time.monotonic() >= deadline:
                    break
                with self._cond:
                    self._acks.pop(rseq, None)
                self._send_frame_bytes(msg.TYPE, payload, FLAG_REPLY, rseq)
                wait_until = min(deadline, self._reply_deadline(min(1.5 ** attempt, 8.0)))
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
            result = self._send_reliable(Request(what), left)
            if result is None:
                raise LinkTimeout(f"the peer did not acknowledge the request within {timeout:g} s")
            if result != AckResult.OK:
                raise ProtocolError(f"the peer cannot answer a request for message type 0x{what:02x}")
            wait_until = min(deadline, self._reply_deadline(4.0))
            with self._cond:
                while self._latest.get(what, (0, None))[0] == before and time.monotonic() < wait_until:
                    self._cond.wait(wait_until - time.monotonic())
                if self._latest.get(what, (0, None))[0] != before:
                    return self._latest[what][1]

    def send_frame(self, data: bytes, timeout: float = 30.0,
                   progress: Callable[[int, int], None] | None = None) -> bool:
        """Transfer ``data`` in acknowledged chunks; True once the peer has it bit-exact.

        False when the deadline or the retry limit (consecutive timeouts without progress) is hit;
        calling again with the same bytes resumes where the receiver stopped. Raises
        FrameRejected when the peer can never accept the frame (too large, bad parameters).
        """
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
            ok = self._run_transfer(tx, peer, deadline, progress)
            self._pending = None if ok else tx
            self._counters["transfers_ok" if ok else "transfers_failed"] += 1
            return ok

    def drop_pending(self) -> None:
        """Give up a frame that failed (no resume) and let the peer free its buffer (FRAME_ABORT)."""
        with self._send_lock:
            tx, self._pending = self._pending, None
        if tx is not None:
            self._send_msg(FrameAbort(tx.xfer, 0))

    # -- transfer engine -----------------------------------------------------------------------

    def _new_sender(self, data: bytes, peer: Hello, chunk: int | None = None) -> FrameSender:
        max_chunk = max(16, min(peer.max_payload or 64, self.max_payload) - FrameChunk.HEADER)
        if chunk is None:
            chunk = min(self.chunk_size, max_chunk) if self.chunk_size else self.sizer.choose(max_chunk)
        window = min(self.window, max(1, peer.window or 1))
        self._xfer_id = (self._xfer_id + 1) & 0xFFFF
        return FrameSender(data, self._xfer_id, chunk, window)

    def _run_transfer(self, tx: FrameSender, peer: Hello, deadline: float, progress) -> bool:
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
                        seq = self._next_seq()
                        tx.record_send(seq, None)
                        out.append((MsgType.FRAME_BEGIN, tx.begin().pack(), FLAG_REPLY, seq))
                        self._poll_seq = seq
                    elif tx.begun:
                        batch = tx.eligible()
                        for k, index in enumerate(batch):
                            seq = self._next_seq()
                            poll = (k + 1) % self.poll_every == 0 or k == len(batch) - 1
                            tx.record_send(seq, index)
                            out.append((MsgType.FRAME_CHUNK, tx.chunk(index).pack(), FLAG_REPLY if poll else 0,
                                        seq))
                            if poll:
                                self._poll_seq = seq
                        self._counters["chunks_sent"] += len(batch)
                    acked_before = tx.n_acked
                for type_, payload, flags, seq in out:
                    end = self._send_frame_bytes(type_, payload, flags, seq)
                    if flags & FLAG_REPLY:
                        self._poll_sent[seq] = end
                with self._cond:
                    if (out and out[-1][2] & FLAG_REPLY) or self._poll_deadline is None:
                        # A deadline always runs while waiting, so a lost or misread answer costs a
                        # timeout, never a hang.
                        self._poll_deadline = self._reply_deadline(scale)
                    wait_until = min(deadline, self._poll_deadline or deadline)
                    while (not tx.done and tx.rejected is None and tx.n_acked == acked_before and tx.begun
                           and not tx.eligible() and time.monotonic() < wait_until):
                        self._cond.wait(max(0.0, wait_until - time.monotonic()))
                    if not tx.begun and self._poll_deadline is not None:
                        self._cond.wait(max(0.0, min(wait_until, self._poll_deadline) - time.monotonic()))
                    smaller = None
                    if tx.n_acked > acked_before or tx.done or tx.answered:
                        # Silence longer than a whole window takes on the wire: the link was down.
                        outage = max(_OUTAGE, 2 * tx.window * (tx.chunk_size + 16) * self._byte_time)
                        if time.monotonic() - last_answer > outage:
                            tx.sends = tx.losses = 0  # losses during an outage say nothing of the noise
                        else:
                            smaller = self._smaller_chunk(tx, peer)
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

    def _smaller_chunk(self, tx: FrameSender, peer: Hello) -> int | None:
        """A chunk size at most half the current one, if this transfer's losses call for it."""
        if self.chunk_size or tx.done or tx.sends < 8 or tx.n_acked * 2 >= tx.n:
            return None
        e = ChunkSizer.estimate(tx.sends, tx.losses, tx.chunk_size)
        best = self.sizer.choose(tx.chunk_size, e)
        return best if best * 2 <= tx.chunk_size else None

    def _reply_deadline(self, scale: float) -> float:
        """When an answer to what was just written is overdue: our queued bytes, then the reply (which
        may wait behind one frame the peer is sending), then the latency allowance."""
        now = time.monotonic()
        allowance = self.latency if self._srtt is None else min(max(self._srtt + 4 * self._rttvar, 0.01), 2.0)
        return max(now, self._tx_free_at) + (_REPLY_WIRE * self._byte_time + allowance) * scale

    def _rtt_sample(self, sample: float) -> None:
        """Smooth the measured turnaround (RFC 6298's estimator) that sets the reply timeouts."""
        if self._srtt is None:
            self._srtt, self._rttvar = sample, sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample

    # -- writing -------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _send_frame_bytes(self, type_: int, payload: bytes, flags: int, seq: int) -> float:
        """Write one frame; return when its last byte should have left the wire."""
        wire = encode_frame(type_, payload, flags=flags, seq=seq)
        with self._write_lock:
            port = self._port
            if port is None:
                return time.monotonic()  # link down: the protocol's retries cover it
            try:
                port.write(wire)
            except (serial.SerialException, OSError) as exc:
                self._port_failed(exc)
                return time.monotonic()
            now = time.monotonic()
            self._tx_free_at = max(now, self._tx_free_at) + len(wire) * self._byte_time
            self._counters["frames_tx"] += 1
            self._counters["bytes_tx"] += len(wire)
            return self._tx_free_at

    def _send_msg(self, msg, flags: int = 0) -> None:
        self._send_frame_bytes(msg.TYPE, msg.pack(), flags, self._next_seq())

    def _hello(self) -> Hello:
        return Hello(ROLE_CODES[self.role], self.max_payload, self._receiver.max_frame, self.window,
                     self.boot_id, self.name)

    # -- reading -------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            port = self._port
            if port is None:
                self._try_reopen()
                self._stop.wait(0.05)
                continue
            try:
                waiting = port.in_waiting
                data = port.read(min(max(waiting, 1), 4096))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if self._stop.is_set():
                    break
                self._port_failed(exc)
                continue
            if data:
                for frame in self._decoder.feed(data):
                    try:
                        self._handle(frame)
                    except Exception:  # noqa: BLE001 - a bad frame must never kill the reader
                        log.exception("error handling a %s frame", frame.type)
            self._tick()

    def _port_failed(self, exc: Exception) -> None:
        """Drop a failed port; one opened from a URL is reopened by the reader, an object is not."""
        self._counters["port_errors"] += 1
        again = self.url is not None and self.reconnect
        log.warning("serial port %s failed (%s)%s", self.url or self._port, exc, "; reopening" if again else "")
        self._drop_port()
        self._next_reopen = time.monotonic() + 0.2

    def _try_reopen(self) -> None:
        if self.url is None or not self.reconnect or time.monotonic() < self._next_reopen:
            return
        try:
            self._port = open_port(self.url, self.baudrate)
        except PortError:
            self._next_reopen = time.monotonic() + 0.5
            return
        self._counters["reconnects"] += 1
        self._decoder = FrameDecoder(self.max_payload)
        self._send_msg(self._hello(), FLAG_REPLY)  # the peer may have restarted meanwhile

    def _tick(self) -> None:
        now = time.monotonic()
        if self.peer is None and now >= self._next_hello:
            self._send_msg(self._hello(), FLAG_REPLY)
            self._next_hello = now + 1.0
        if self.heartbeat_interval and now >= self._next_heartbeat:
            if self._next_heartbeat:
                self._send_msg(Heartbeat(int((now - self._started) * 1000)))
            self._next_heartbeat = now + self.heartbeat_interval

    def _handle(self, frame) -> None:
        try:
            msg = unpack_message(frame.type, frame.payload)
        except ValueError as exc:
            self._counters["malformed"] += 1
            log.debug("dropped frame type 0x%02x: %s", frame.type, exc)
            if frame.reply_requested and frame.type not in (MsgType.FRAME_BEGIN, MsgType.FRAME_CHUNK):
                result = AckResult.UNSUPPORTED if "unknown" in str(exc) else AckResult.INVALID
                self._send_msg(Ack(frame.seq, result))
            return
        self._last_rx = time.monotonic()
        self._counters["messages_rx"] += 1
        t = frame.type
        if t == MsgType.FRAME_CHUNK:
            status, data = self._receiver.on_chunk(msg, frame.seq, frame.reply_requested)
            if status is not None:
                self._send_msg(status)
            if data is not None:
                self._emit(self.on_frame, data)
            return
        if t == MsgType.FRAME_STATUS:
            with self._cond:
                tx = self._tx
                sent = self._poll_sent.pop(msg.echo_seq, None)
                if sent is not None:
                    self._rtt_sample(max(0.0, time.monotonic() - sent - _STATUS_WIRE * self._byte_time))
                if tx is not None and msg.xfer == tx.xfer:
                    tx.on_status(msg)
                    if msg.echo_seq == self._poll_seq or not tx.begun or tx.rejected is not None:
                        self._poll_deadline = None
                self._cond.notify_all()
            return
        if t == MsgType.FRAME_BEGIN:
            self._send_msg(self._receiver.on_begin(msg, frame.seq))
            return
        if t == MsgType.FRAME_ABORT:
            self._receiver.on_abort(msg.xfer)
            return
        if t == MsgType.ACK:
            with self._cond:
                self._acks[msg.seq] = msg.result
                self._cond.notify_all()
            return
        if t == MsgType.HELLO:
            with self._cond:
                if self.peer is None or self.peer.boot_id != msg.boot_id:
                    self._peer_rseq = None  # a restarted peer counts its sequence numbers anew
                self.peer = msg
                self._record(t, msg)
            if frame.reply_requested:
                self._send_msg(self._hello())
            self._emit(self.on_hello, msg)
            self._emit(self.on_message, msg)
            return
        if frame.reply_requested:
            duplicate = frame.seq == self._peer_rseq
            self._peer_rseq = frame.seq
            result = self._answer(msg) if t == MsgType.REQUEST else AckResult.OK
            self._send_msg(Ack(frame.seq, result))
            if duplicate:
                self._counters["duplicates"] += 1
                return
        elif t == MsgType.REQUEST:
            self._answer(msg)
        with self._cond:
            self._record(t, msg)
        callback = {MsgType.TRIGGER: self.on_trigger, MsgType.SET_QUALITY: self.on_set_quality,
                    MsgType.TELEMETRY: self.on_telemetry, MsgType.STATUS: self.on_status}.get(t)
        self._emit(callback, msg)
        self._emit(self.on_message, msg)

    def _record(self, type_: int, msg) -> None:
        count = self._latest.get(type_, (0, None))[0]
        self._latest[type_] = (count + 1, msg)
        self._cond.notify_all()

    def _answer(self, req: Request) -> int:
        """Send what a REQUEST asks for; return the ACK result."""
        if req.what == MsgType.HELLO:
            self._send_msg(self._hello())
        elif req.what == MsgType.STATUS:
            values = {"role": self.role, "uptime_s": f"{time.monotonic() - self._started:.0f}"}
            if self.status_provider is not None:
                values.update(self.status_provider())
            self._send_msg(Status(values))
        elif req.what == MsgType.TELEMETRY and self.telemetry_provider is not None:
            self._send_msg(self.telemetry_provider())
        else:
            return AckResult.UNSUPPORTED
        return AckResult.OK

    # -- events --------------------------------------------------------------------------------

    def _emit(self, callback, arg) -> None:
        if callback is None:
            return
        while True:
            try:
                self._events.put_nowait((callback, arg))
                return
            except queue.Full:
                try:
                    self._events.get_nowait()  # the newest events matter most: drop the oldest
                    self._counters["events_dropped"] += 1
                except queue.Empty:
                    pass

    def _event_loop(self) -> None:
        while not self._stop.is_set():
            try:
                callback, arg = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                callback(arg)
            except Exception:  # noqa: BLE001 - a failing callback must not stop the link
                log.exception("bridge callback %r failed", callback)


__all__ = ["Link", "open_port"]
