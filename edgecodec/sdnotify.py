"""The sd_notify protocol, spoken directly: datagrams like ``READY=1`` to the socket in $NOTIFY_SOCKET.

No systemd library is needed; this is the whole protocol. Outside systemd every call is a no-op.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Optional

log = logging.getLogger(__name__)


def _address(value: str) -> str:
    """'@name' is Linux's abstract namespace, spelled with a leading NUL byte in the socket API."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    def __init__(self, address: Optional[str] = None, environ=None):
        env = os.environ if environ is None else environ
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self._env = env
        self._sock: Optional[socket.socket] = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False (logged, never raised) if it failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), _address(self.address))
            return True
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog_interval(self) -> Optional[float]:
        """Seconds within which systemd expects WATCHDOG=1 from this process, or None if not watched."""
        usec = self._env.get("WATCHDOG_USEC")
        pid = self._env.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 1e6 if value > 0 else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
