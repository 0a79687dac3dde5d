"""What a ``Link`` tells its application: one handler object, and the thread that calls it.

Subclass ``LinkHandler`` and override the methods you need; every method has a no-op default.
The ``on_*`` events run on the link's event thread, one at a time, so they may block (a trigger
that captures and calls ``send_frame``); at most 64 events wait, the oldest dropped beyond that.
``telemetry`` and ``status`` answer the peer's REQUESTs on the reader thread: keep them quick.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from firmware_bridge.messages import Hello, SetQuality, Status, Telemetry, Trigger

log = logging.getLogger("firmware_bridge")

EVENT_QUEUE = 64


class LinkHandler:
    """Events and answers of a ``Link``; the defaults ignore every event and support no TELEMETRY request."""

    def on_hello(self, msg: Hello) -> None:
        """The peer introduced itself (at its start, after a reconnection, or asked)."""

    def on_trigger(self, msg: Trigger) -> None:
        """The peer asks for a frame (PIR, GPIO...)."""

    def on_set_quality(self, msg: SetQuality) -> None:
        """The peer asks for another quality or bitrate."""

    def on_telemetry(self, msg: Telemetry) -> None:
        """Battery, temperature and other sensor values."""

    def on_status(self, msg: Status) -> None:
        """The peer's free-form state."""

    def on_frame(self, data: bytes) -> None:
        """A whole compressed frame arrived bit-exact."""

    def on_message(self, msg: Any) -> None:
        """Every control message that reached the application (HELLO included), after its own ``on_*``."""

    def telemetry(self) -> Telemetry | None:
        """The answer to a REQUEST for TELEMETRY; None: not supported (the ACK says so)."""
        return None

    def status(self) -> dict:
        """Values added to the STATUS answering a REQUEST (the link adds its role and uptime)."""
        return {}


def handler_method(handler: Any, name: str) -> Callable | None:
    """``handler.name``, or None when it is missing or ``LinkHandler``'s no-op (no event is queued for it)."""
    method = getattr(handler, name, None)
    if method is None or getattr(method, "__func__", None) is getattr(LinkHandler, name, None):
        return None
    return method


class EventDispatcher:
    """A bounded queue of handler calls and the thread that runs them; the newest events win."""

    def __init__(self, counters: dict, maxsize: int = EVENT_QUEUE):
        self._counters = counters
        self._events: queue.Queue = queue.Queue(maxsize=maxsize)

    @property
    def waiting(self) -> int:
        return self._events.qsize()

    def emit(self, callback: Callable | None, arg) -> None:
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

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                callback, arg = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                callback(arg)
            except Exception:  # noqa: BLE001 - a failing handler must not stop the link
                log.exception("bridge handler %r failed", callback)


__all__ = ["EventDispatcher", "LinkHandler", "handler_method"]
