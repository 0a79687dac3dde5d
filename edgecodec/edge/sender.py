"""Send stage: deliver encoded frames over a ``Link``, in order, spooling to disk whenever it is down.

Live frames go straight to the link and wait in memory until the server acknowledges them. When
the link fails, the unacknowledged ones and everything after go to the spool. After reconnecting,
the spool is sent oldest first, with newly encoded frames appended behind it, and live sending
resumes once it is empty, so the server sees every stream in sequence order.

A window of unacknowledged frames bounds how far sending runs ahead of the server. While acks
still come, a full window holds the encoder back, and frames are dropped at the source (a slow
network must not build a backlog). When acks stop coming, new frames go to the spool instead, and
after ``ack_timeout`` the link is declared dead. Connection attempts run in a helper thread so
that frames keep flowing into the spool while one hangs.

Stream mode: a delta frame only decodes after the frames before it, so none is sent or spooled after
the spool had to drop frames, until the next key frame (``Spool.admit``); the sender then asks the
encoder for a key frame (``request_key``) at once, and after every reconnection too, so a server that
lost state (or a viewer that joined while the link was down) has a picture to start from.

An outage is retried for ever, but a refusal of the camera's credentials (``AuthRefused``: a wrong
secret, an unknown camera id, a server that fails its own proof) does not fix itself: after
``auth_retries`` of them in a row the stage ends with that error, which the service turns into a
non-zero exit, keeping the frames it has in the spool.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from edgecodec.edge.encoder import Encoded
from edgecodec.edge.spool import Spool
from edgecodec.edge.stage import Stage
from edgecodec.transport import AuthRefused, Link, LinkError

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    sequence: int
    size: int
    sent_at: float
    packet: Optional[bytes]  # None when the frame is also in the spool


@dataclass(frozen=True)
class SendPolicy:
    window_frames: int = 64
    window_bytes: int = 4 << 20
    ack_timeout: float = 5.0
    stall_spool: float = 1.0  # window full and no ack this long: spool new frames
    keepalive: float = 5.0
    retry_min: float = 0.25
    retry_max: float = 10.0
    drain_timeout: float = 3.0
    auth_retries: int = 3  # credentials refused this many times in a row: give up


class _Attempt:
    """One connection attempt in its own thread; a result nobody collects is closed by the thread."""

    def __init__(self, link: Link):
        self.link = link
        self.last_stored: Optional[int] = None
        self.error: Optional[LinkError] = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        threading.Thread(target=self._run, name="edgecodec-connect", daemon=True).start()

    def _run(self) -> None:
        try:
            self.last_stored = self.link.connect()
        except LinkError as exc:
            self.error = exc
        with self._lock:
            self.done.set()
            if self._abandoned:
                self.link.close()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self.done.is_set():
                self.link.close()


class SendStage(Stage):
    name = "send"

    def __init__(self, inbox: queue.Queue, open_link: Callable[[], Link], spool: Spool,
                 lost_total: Callable[[], int] = lambda: 0, policy: SendPolicy = SendPolicy(),
                 request_key: Callable[[str], None] = lambda why: None):
        super().__init__()
        self.request_key = request_key  # the encoder's: make the next frame a key frame
        self.inbox = inbox
        self.open_link = open_link
        self.spool = spool
        self.lost_total = lost_total  # frames lost before this stage, reported to the server
        self.policy = policy
        self.link: Optional[Link] = None
        self._attempt: Optional[_Attempt] = None
        self._inflight: collections.deque[_InFlight] = collections.deque()
        self._inflight_bytes = 0
        self._cursor: Optional[int] = None  # highest sequence sent (or known stored) on this link
        self._from_spool = False  # sending the spool's frames; new frames queue behind them
        self._retry_at = 0.0
        self._backoff = policy.retry_min
        self._last_send = 0.0
        self._last_progress = 0.0  # last ack, or the moment the window had room
        self._reported_lost = 0
        self._down_since: Optional[float] = time.monotonic()
        self._warned_down = False
        self._auth_refusals = 0  # in a row, since the last successful connection
        # Figures, read by the pipeline's status.
        self.sent = 0
        self.acked = 0
        self.bytes_sent = 0
        self.spooled = 0
        self.connects = 0
        self.last_ack: Optional[int] = None

    @property
    def connected(self) -> bool:
        return self.link is not None

    # --- main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        deadline = None
        try:
            while True:
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + self.policy.drain_timeout
                if deadline is not None and self._drained_or_late(deadline):
                    return
                self.beat()
                if self.link is None:
                    self._offline_step(draining=deadline is not None)
                    if deadline is not None and self.link is None:
                        return
                    continue
                try:
                    self._step()
                except LinkError as exc:
                    self._disconnected(exc)
        finally:
            self._shutdown()

    def _offline_step(self, draining: bool) -> None:
        """Spool what arrives; start or collect a connection attempt."""
        attempt = self._attempt
        if attempt is not None and attempt.done.is_set():
            self._attempt = None
            self._connected(attempt) if attempt.error is None else self._connect_failed(attempt.error)
            return
        if attempt is None and not draining and time.monotonic() >= self._retry_at:
            self._attempt = _Attempt(self.open_link())
        self._spool_inbox(wait=0.0 if draining else 0.05)

    def _drained_or_late(self, deadline: float) -> bool:
        """During a drain: done when everything was delivered, or time is up."""
        if time.monotonic() >= deadline:
            return True
        return (self.link is not None and self.inbox.empty() and not self._inflight
                and self.spool.next_after(self._cursor) is None)

    def _window_full(self) -> bool:
        return len(self._inflight) >= self.policy.window_frames or self._inflight_bytes >= self.policy.window_bytes

    def _step(self) -> None:
        link = self.link
        self._handle_ack(link.poll(0))
        self._report_lost()
        now = time.monotonic()
        if self._inflight and now - self._inflight[0].sent_at > self.policy.ack_timeout:
            raise LinkError(f"no acknowledgement for {self.policy.ack_timeout:g} s")
        if self._window_full():
            self._handle_ack(link.poll(0.02))
            if self._window_full() and now - self._last_progress > self.policy.stall_spool:
                if not self._from_spool:
                    log.info("server not acknowledging; spooling new frames")
                    self._spool_live_inflight()
                    self._from_spool = True
                self._spool_inbox(wait=0.0)
            return
        if self._from_spool:
            self._spool_inbox(wait=0.0)  # newer frames queue up behind the spool, keeping order
            item = self.spool.next_after(self._cursor)
            if item is not None:
                self._send(item[0], item[1], keep=None)
                return
            self._from_spool = False
            log.info("spool sent; streaming live")
        try:
            frame: Encoded = self.inbox.get(timeout=0.01)
        except queue.Empty:
            if now - self._last_send > self.policy.keepalive:
                link.keepalive()
                self._last_send = now
            self._handle_ack(link.poll(0.01))
            return
        if self.spool.admit(frame.key):
            self._send(frame.sequence, frame.packet, keep=frame.packet)
        else:
            self._frames_lost("a delta frame's reference was dropped")

    def _send(self, sequence: int, packet: bytes, keep: Optional[bytes]) -> None:
        # In flight before the attempt: if sending fails, the frame is spooled with the others.
        now = time.monotonic()
        if not self._inflight:
            self._last_progress = now
        self._inflight.append(_InFlight(sequence, len(packet), now, keep))
        self._inflight_bytes += len(packet)
        self._cursor = sequence
        self.link.send_frame(sequence, packet)
        self._last_send = now
        self.sent += 1
        self.bytes_sent += len(packet)

    def _handle_ack(self, acked: Optional[int]) -> None:
        if acked is None or (self.last_ack is not None and acked <= self.last_ack):
            return
        self.last_ack = acked
        self._last_progress = time.monotonic()
        spooled = False
        while self._inflight and self._inflight[0].sequence <= acked:
            item = self._inflight.popleft()
            self._inflight_bytes -= item.size
            spooled |= item.packet is None
            self.acked += 1
        if spooled or self._from_spool:
            self.spool.ack(acked)

    def _report_lost(self) -> None:
        lost = self.lost_total() + self.spool.dropped
        if lost > self._reported_lost:
            self.link.send_dropped(lost - self._reported_lost)
            self._reported_lost = lost

    # --- connection changes ----------------------------------------------------------------------

    def _connect_failed(self, exc: LinkError) -> None:
        if isinstance(exc, AuthRefused):
            self._auth_refusals += 1
            limit = self.policy.auth_retries
            if self._auth_refusals >= limit:
                raise AuthRefused(f"{exc}; gave up after {limit} refusal{'s' if limit != 1 else ''} "
                                  f"in a row (frames kept in the spool)")
            log.error("%s; retrying (%d of %d)", exc, self._auth_refusals, limit)
        elif not self._warned_down:
            log.warning("server unreachable (%s); spooling, retrying", exc)
            self._warned_down = True
        else:
            log.debug("reconnect failed: %s", exc)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.policy.retry_max)

    def _connected(self, attempt: _Attempt) -> None:
        self.link = attempt.link
        self.connects += 1
        self._warned_down = False
        self._auth_refusals = 0
        self._backoff = self.policy.retry_min
        self._last_send = self._last_progress = time.monotonic()
        self.last_ack = None
        if attempt.last_stored is not None:
            self.spool.ack(attempt.last_stored)  # stored before an acknowledgement got lost
        self._cursor = attempt.last_stored
        self._from_spool = len(self.spool) > 0
        if self.connects > 1:  # the server or its viewers may have missed frames meanwhile
            self.request_key("reconnected")
        outage = "" if self._down_since is None else f" after {time.monotonic() - self._down_since:.1f} s"
        self._down_since = None
        log.info("connected to %s%s; %d frames waiting in the spool", self.link.config.url, outage,
                 len(self.spool))

    def _disconnected(self, exc: Exception) -> None:
        log.warning("link lost: %s; spooling until it is back", exc)
        self._warned_down = True
        link, self.link = self.link, None
        if link is not None:
            link.close()
        self._down_since = time.monotonic()
        self._retry_at = time.monotonic() + self.policy.retry_min
        self._backoff = self.policy.retry_min * 2
        self._spool_inflight()

    def _spool_live_inflight(self) -> None:
        """Before newer frames go to the spool, the older in-flight ones must be there too."""
        for item in self._inflight:
            if item.packet is not None:
                self._spool(item.sequence, item.packet)
                item.packet = None

    def _spool_inflight(self) -> None:
        """Unacknowledged live frames are older than anything still queued: spool them first."""
        for item in self._inflight:
            if item.packet is not None:
                self._spool(item.sequence, item.packet)
        self._inflight.clear()
        self._inflight_bytes = 0
        self._cursor = None
        self._from_spool = False

    def _spool(self, sequence: int, packet: bytes, key: Optional[bool] = None) -> None:
        if self.spool.append(sequence, packet, key):
            self._frames_lost("the spool dropped frames")
        self.spooled += 1

    def _frames_lost(self, why: str) -> None:
        """Encoded frames were dropped: the stream needs a key frame before delta frames decode again."""
        self.request_key(why)

    def _spool_inbox(self, wait: float) -> None:
        try:
            frame = self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._spool(frame.sequence, frame.packet, frame.key)
            try:
                frame = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _shutdown(self) -> None:
        """Keep what was not delivered: unacknowledged and queued frames go to the spool."""
        if self._attempt is not None:
            self._attempt.abandon()
            self._attempt = None
        if self.link is not None:
            try:
                self._handle_ack(self.link.poll(0))
            except LinkError:
                pass
            self.link.close()
            self.link = None
        self._spool_inflight()
        self._spool_inbox(wait=0.0)
        self.spool.close()
