"""Serial channels for tests, demos and benchmarks: paced in-process pairs and a faulty pty relay.

``PacedPair`` gives two serial-like ends joined by a wire that delivers bytes at a baud rate's
pace (10 bits per byte, 8N1) through a bounded transmit buffer, as a UART does. ``PtyRelay``
joins two real pseudo-terminals through a relay thread, so both sides open an OS tty with
pyserial. Both can corrupt, insert and drop bytes and cut the link (``FaultModel``).
"""
from __future__ import annotations

import collections
import os
import random
import select
import threading
import time
import tty


class FaultModel:
    """Per-byte faults: ``corrupt`` flips bits, ``drop`` loses the byte, ``insert`` adds a random byte.

    Set ``cut`` to lose every byte (an unplugged cable) until it is cleared.
    """

    def __init__(self, corrupt: float = 0.0, insert: float = 0.0, drop: float = 0.0, seed: int | None = None):
        self.corrupt, self.insert, self.drop = corrupt, insert, drop
        self.cut = False
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.stats = {"bytes": 0, "corrupted": 0, "inserted": 0, "dropped": 0, "cut": 0}

    def apply(self, data: bytes) -> bytes:
        with self._lock:
            self.stats["bytes"] += len(data)
            if self.cut:
                self.stats["cut"] += len(data)
                return b""
            if not (self.corrupt or self.insert or self.drop):
                return bytes(data)
            rnd, out = self._rng.random, bytearray()
            for byte in data:
                r = rnd()
                if r < self.drop:
                    self.stats["dropped"] += 1
                elif r < self.drop + self.corrupt:
                    out.append(byte ^ self._rng.randrange(1, 256))
                    self.stats["corrupted"] += 1
                else:
                    out.append(byte)
                if self.insert and rnd() < self.insert:
                    out.append(self._rng.randrange(256))
                    self.stats["inserted"] += 1
            return bytes(out)


class _Wire:
    """One direction: bytes written at time t arrive one by one, ``byte_time`` apart, after the previous ones."""

    def __init__(self, baudrate: int | None, faults: FaultModel | None, tx_buffer: int, rx_buffer: int):
        self.byte_time = 10.0 / baudrate if baudrate else 0.0
        self.faults = faults
        self.tx_buffer = tx_buffer
        self.rx_buffer = rx_buffer
        self.cond = threading.Condition()
        self.chunks: collections.deque = collections.deque()  # [start, bytes, consumed]
        self.free_at = 0.0
        self.overruns = 0
        self.closed = False

    def write(self, data: bytes, write_timeout: float | None = None) -> None:
        deadline = None if write_timeout is None else time.monotonic() + write_timeout
        with self.cond:
            # A UART's driver buffer holds tx_buffer bytes; a writer beyond that waits, as on a real port.
            while not self.closed and self.byte_time and \
                    (self.free_at - time.monotonic()) > self.tx_buffer * self.byte_time:
                wait = self.free_at - time.monotonic() - self.tx_buffer * self.byte_time
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError("write timeout")
                self.cond.wait(max(wait, 0.001))
            now = time.monotonic()
            start = max(now, self.free_at)
            self.free_at = start + len(data) * self.byte_time
            data = self.faults.apply(data) if self.faults is not None else bytes(data)
            if data:
                if self._arrived_unread(now) + len(data) > self.rx_buffer:
                    self.overruns += 1  # the reader fell behind: the bytes are lost, as in a UART overrun
                    return
                self.chunks.append([start, data, 0])
                self.cond.notify_all()

    def _available(self, chunk, now: float) -> int:
        start, data, consumed = chunk
        if not self.byte_time:
            return len(data) - consumed
        arrived = min(len(data), int((now - start) / self.byte_time)) if now >= start else 0
        return max(0, arrived - consumed)

    def _arrived_unread(self, now: float) -> int:
        return sum(len(c[1]) - c[2] for c in self.chunks)

    def in_waiting(self) -> int:
        with self.cond:
            now = time.monotonic()
            return sum(self._available(c, now) for c in self.chunks)

    def read(self, size: int, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        out = bytearray()
        with self.cond:
            while True:
                now = time.monotonic()
                while self.chunks and len(out) < size:
                    chunk = self.chunks[0]
                    n = min(self._available(chunk, now), size - len(out))
                    if n <= 0:
                        break
                    out += chunk[1][chunk[2]:chunk[2] + n]
                    chunk[2] += n
                    if chunk[2] == len(chunk[1]):
                        self.chunks.popleft()
                if len(out) >= size or self.closed:
                    return bytes(out)
                if out and deadline is None:
                    return bytes(out)
                if deadline is not None and now >= deadline:
                    return bytes(out)
                wait = 0.05 if deadline is None else deadline - now
                if self.chunks:
                    chunk = self.chunks[0]
                    next_arrival = chunk[0] + (chunk[2] + 1) * self.byte_time
                    wait = min(wait, max(next_arrival - now, 0.0002))
                self.cond.wait(wait)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class PacedPort:
    """One end of a ``PacedPair``: the subset of pyserial's ``Serial`` that ``Link`` uses."""

    def __init__(self, rx: _Wire, tx: _Wire, baudrate: int | None, timeout: float | None = 0.02):
        self._rx, self._tx = rx, tx
        self.baudrate = baudrate or 115200
        self.timeout = timeout
        self.write_timeout: float | None = None
        self.is_open = True

    @property
    def in_waiting(self) -> int:
        return self._rx.in_waiting()

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise OSError("port closed")
        return self._rx.read(size, self.timeout)

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise OSError("port closed")
        self._tx.write(bytes(data), self.write_timeout)
        return len(data)

    def flush(self) -> None:
        while self.is_open and time.monotonic() < self._tx.free_at:
            time.sleep(min(0.01, self._tx.free_at - time.monotonic()))

    def reset_input_buffer(self) -> None:
        with self._rx.cond:
            self._rx.chunks.clear()

    def close(self) -> None:
        self.is_open = False
        self._rx.close()


class PacedPair:
    """Two connected serial-like ends; ``baudrate=None`` delivers instantly.

    ``faults_ab`` applies to bytes from ``a`` to ``b``, ``faults_ba`` to the other direction.
    """

    def __init__(self, baudrate: int | None = 115200, faults_ab: FaultModel | None = None,
                 faults_ba: FaultModel | None = None, tx_buffer: int = 4096, rx_buffer: int = 65536):
        ab = _Wire(baudrate, faults_ab, tx_buffer, rx_buffer)
        ba = _Wire(baudrate, faults_ba, tx_buffer, rx_buffer)
        self.a = PacedPort(ba, ab, baudrate)
        self.b = PacedPort(ab, ba, baudrate)

    def close(self) -> None:
        self.a.close()
        self.b.close()


class PtyRelay:
    """Two pseudo-terminal pairs joined by a relay thread that applies faults and, optionally, pacing.

    Open ``port_a`` and ``port_b`` (tty paths) with pyserial; bytes written to one come out of the
    other. ``with PtyRelay(...) as relay:`` stops the relay and closes the ptys on exit.
    """

    def __init__(self, faults_ab: FaultModel | None = None, faults_ba: FaultModel | None = None,
                 baudrate: int | None = None):
        self._fds: list[int] = []
        self._masters = []
        names = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo or line editing before pyserial opens it
            self._fds += [master, slave]
            self._masters.append(master)
            names.append(os.ttyname(slave))
        self.port_a, self.port_b = names
        self._faults = {0: faults_ab, 1: faults_ba}
        self._byte_time = 10.0 / baudrate if baudrate else 0.0
        self._free_at = [0.0, 0.0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ma, mb = self._masters
        pending: list[collections.deque] = [collections.deque(), collections.deque()]  # (due, bytes)
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.02
            for d in (0, 1):
                q = pending[d]
                while q and q[0][0] <= now:
                    _, data = q.popleft()
                    try:
                        os.write(mb if d == 0 else ma, data)
                    except OSError:
                        pass
                if q:
                    timeout = min(timeout, max(q[0][0] - now, 0.0))
            try:
                ready, _, _ = select.select([ma, mb], [], [], timeout)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                d = 0 if fd == ma else 1
                faults = self._faults[d]
                if faults is not None:
                    data = faults.apply(data)
                if not self._byte_time:
                    if data:
                        pending[d].append((0.0, data))
                    continue
                # Deliver in small slices, each when its last byte would have crossed the wire.
                t = max(time.monotonic(), self._free_at[d])
                for i in range(0, len(data), 8):
                    piece = data[i:i + 8]
                    t += len(piece) * self._byte_time
                    pending[d].append((t, piece))
                self._free_at[d] = t

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "PtyRelay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SocketPort:
    """A connected TCP socket with the serial-like interface ``Link`` uses (the server side of socket://)."""

    def __init__(self, sock, baudrate: int = 115200, timeout: float = 0.02):
        self._sock = sock
        self._sock.settimeout(timeout)
        self.baudrate = baudrate
        self.timeout = timeout
        self.is_open = True

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        import socket

        try:
            data = self._sock.recv(max(size, 4096))
        except socket.timeout:
            return b""
        if not data:
            raise OSError("connection closed by peer")
        return data

    def write(self, data: bytes) -> int:
        self._sock.sendall(data)
        return len(data)

    def close(self) -> None:
        self.is_open = False
        try:
            self._sock.close()
        except OSError:
            pass
