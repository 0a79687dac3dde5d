"""The byte pipe under a ``Link``: a port that reopens itself, the frame writer, the reply timer.

``ReconnectingPort`` owns the serial port (one it opened from a name or URL is reopened after a
failure; a caller's object is used as is) and knows when the bytes written so far leave the wire.
``FrameWriter`` encodes and writes frames and numbers the unreliable ones. ``ReplyTimer`` says
when an answer to what was just written is overdue, from the measured turnaround.
"""
from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from typing import Any

import serial

from firmware_bridge.errors import PortError
from firmware_bridge.framing import encode_frame, max_wire_size

log = logging.getLogger("firmware_bridge")

READ_ERRORS = (serial.SerialException, OSError, TypeError, AttributeError)  # a read on a failed port
STATUS_WIRE = max_wire_size(10)
REPLY_WIRE = STATUS_WIRE + max_wire_size(64)  # the reply may wait behind a short frame


def open_port(url: str, baudrate: int, timeout: float = 0.02):
    """Open a port name or pyserial URL (``loop://``, ``socket://host:port``, ``/dev/ttyUSB0``)."""
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=5.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        code = getattr(exc, "errno", None)
        reason = os.strerror(code) if isinstance(code, int) else re.sub(r".*\[Errno \d+\] ", "", str(exc))
        raise PortError(f"cannot open {url}: {reason}") from None


class ReconnectingPort:
    """A serial port given by name or URL (reopened after a failure) or a serial-like object.

    ``counters`` receives ``frames_tx``, ``bytes_tx``, ``port_errors`` and ``reconnects``.
    """

    def __init__(self, port: str | Any, baudrate: int, counters: dict, reconnect: bool = True):
        self.url = port if isinstance(port, str) else None
        self.baudrate = int(baudrate)
        self.reconnect = reconnect
        self.byte_time = 10.0 / self.baudrate  # 8N1: ten bits a byte
        self.free_at = 0.0  # when the last byte written should have left the wire
        self._counters = counters
        self._port = open_port(port, self.baudrate) if self.url else port
        self._write_lock = threading.Lock()
        self._next_reopen = 0.0

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def write(self, wire: bytes) -> float:
        """Write one encoded frame; return when its last byte should have left the wire."""
        with self._write_lock:
            port = self._port
            if port is None:
                return time.monotonic()  # link down: the protocol's retries cover it
            try:
                port.write(wire)
            except (serial.SerialException, OSError) as exc:
                self.failed(exc)
                return time.monotonic()
            now = time.monotonic()
            self.free_at = max(now, self.free_at) + len(wire) * self.byte_time
            self._counters["frames_tx"] += 1
            self._counters["bytes_tx"] += len(wire)
            return self.free_at

    def read(self, limit: int = 4096) -> bytes | None:
        """What has arrived (possibly nothing, after the port's read timeout); None while no port is
        open. Raises one of ``READ_ERRORS`` when the port fails."""
        port = self._port
        if port is None:
            return None
        waiting = port.in_waiting
        return port.read(min(max(waiting, 1), limit))

    def failed(self, exc: Exception) -> None:
        """Drop a failed port; one opened from a URL is reopened by ``reopen``, an object is not."""
        self._counters["port_errors"] += 1
        again = self.url is not None and self.reconnect
        log.warning("serial port %s failed (%s)%s", self.url or self._port, exc, "; reopening" if again else "")
        self.close()
        self._next_reopen = time.monotonic() + 0.2

    def reopen(self) -> bool:
        """Try to reopen a dropped port (not before its back-off has passed); True when it is open again."""
        if self.url is None or not self.reconnect or time.monotonic() < self._next_reopen:
            return False
        try:
            self._port = open_port(self.url, self.baudrate)
        except PortError:
            self._next_reopen = time.monotonic() + 0.5
            return False
        self._counters["reconnects"] += 1
        return True

    def close(self) -> None:
        """Forget the port; close it when it was opened here (a caller's object stays the caller's)."""
        port, self._port = self._port, None
        if port is not None and self.url is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - closing a broken port must not fail
                pass


class FrameWriter:
    """Encodes and writes frames on a port; numbers frames sent without REPLY (a free-running ``seq``)."""

    def __init__(self, port: ReconnectingPort):
        self.port = port
        self._seq = random.randrange(256)

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def send(self, type_: int, payload: bytes, flags: int, seq: int) -> float:
        """Write one frame; return when its last byte should have left the wire."""
        return self.port.write(encode_frame(type_, payload, flags=flags, seq=seq))

    def send_msg(self, msg, flags: int = 0) -> float:
        return self.send(msg.TYPE, msg.pack(), flags, self.next_seq())


class ReplyTimer:
    """When an answer is overdue: the queued bytes, the reply's own wire time, then the smoothed
    measured turnaround (RFC 6298's estimator; ``latency`` until there is a measurement)."""

    def __init__(self, port: ReconnectingPort, latency: float):
        self.port = port
        self.latency = latency
        self._srtt: float | None = None
        self._rttvar = 0.0

    def deadline(self, scale: float) -> float:
        """When an answer to what was just written is overdue: our queued bytes, then the reply (which
        may wait behind one frame the peer is sending), then the latency allowance; all times ``scale``."""
        now = time.monotonic()
        allowance = self.latency if self._srtt is None else min(max(self._srtt + 4 * self._rttvar, 0.01), 2.0)
        return max(now, self.port.free_at) + (REPLY_WIRE * self.port.byte_time + allowance) * scale

    def status_arrived(self, sent_end: float) -> None:
        """A FRAME_STATUS answered a frame whose last byte left the wire at ``sent_end``."""
        self.sample(max(0.0, time.monotonic() - sent_end - STATUS_WIRE * self.port.byte_time))

    def sample(self, sample: float) -> None:
        """Smooth the measured turnaround that sets the reply timeouts."""
        if self._srtt is None:
            self._srtt, self._rttvar = sample, sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample


__all__ = ["FrameWriter", "ReconnectingPort", "ReplyTimer", "open_port"]
