"""The direct link: one TCP (or TLS) connection per camera, speaking the protocol of ``wire``."""
from __future__ import annotations

import logging
import os
import select
import socket
import ssl
from typing import Optional

from edgecodec.transport import auth, wire
from edgecodec.transport.base import DEFAULT_PORT, AuthRefused, Link, LinkConfig, LinkError, parse_url

log = logging.getLogger(__name__)


def _enable_keepalive(sock: socket.socket) -> None:
    """Let the kernel notice a silently dead peer too (we also time out unacknowledged frames)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class TcpLink(Link):
    def __init__(self, config: LinkConfig):
        super().__init__(config)
        parts = parse_url(config.url)
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        self.tls = parts.scheme == "tls"
        self._sock: Optional[socket.socket] = None
        self._reader = wire.Reader()
        self._acked: Optional[int] = None

    # --- connection ----------------------------------------------------------------------

    def connect(self) -> Optional[int]:
        cfg = self.config
        try:
            sock = socket.create_connection((self.host, self.port), timeout=cfg.connect_timeout)
        except OSError as exc:
            raise LinkError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _enable_keepalive(sock)
            if self.tls:
                ctx = auth.client_context(cfg.tls_pin, cfg.tls_ca)
                sock = ctx.wrap_socket(sock, server_hostname=None if cfg.tls_pin else self.host)
                auth.check_pin(sock, cfg.tls_pin)
            self._sock = sock
            self._reader = wire.Reader()
            self._acked = None
            last = self._handshake()
            sock.settimeout(cfg.io_timeout)
            return last
        except auth.AuthError as exc:  # a certificate that fails its pin, a server without our secret
            self.close()
            raise AuthRefused(f"server {self.host}:{self.port} failed authentication: {exc}") from None
        except (OSError, ssl.SSLError, wire.ProtocolError) as exc:
            self.close()
            raise LinkError(f"handshake with {self.host}:{self.port} failed: {exc}") from None
        except LinkError:
            self.close()
            raise

    def _handshake(self) -> Optional[int]:
        cfg = self.config
        hello = wire.Hello(cfg.camera_id, cfg.model_id, cfg.stream_id, os.urandom(wire.NONCE_SIZE))
        self._sock.sendall(wire.hello(hello))
        challenge = self._expect(wire.MsgType.CHALLENGE)
        self._sock.sendall(wire.control(wire.MsgType.AUTH, auth.client_proof(cfg.secret, challenge, hello)))
        welcome = wire.parse_welcome(self._expect(wire.MsgType.WELCOME))
        if not auth.verify(auth.server_proof(cfg.secret, challenge, hello, welcome.last_sequence),
                           welcome.proof):
            raise auth.AuthError("the server did not prove it knows this camera's secret")
        return welcome.last_sequence

    def _expect(self, kind: wire.MsgType) -> bytes:
        while True:
            for msg in self._read(self.config.connect_timeout, block=True):
                if isinstance(msg, wire.Control) and msg.type == wire.MsgType.ERROR:
                    code, text = wire.parse_error(msg.payload)
                    if code == wire.ErrorCode.AUTH:
                        # The server does not say which of the two, so as not to reveal which ids exist;
                        # its log does.
                        raise AuthRefused(f"server {self.host}:{self.port} refused camera "
                                          f"{self.config.camera_id!r}: wrong secret or unknown camera id "
                                          f"({text})")
                    raise LinkError("server refused: " + text)
                if isinstance(msg, wire.Control) and msg.type == kind:
                    return msg.payload
                raise wire.ProtocolError(f"expected {kind.name} during the handshake, got {msg}")

    def _read(self, timeout: float, block: bool = False) -> list:
        """Receive what is there (waiting up to ``timeout``) and parse it; EOF is a LinkError."""
        sock = self._sock
        if sock is None:
            raise LinkError("not connected")
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        if not pending:
            ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
            if not ready:
                if block:
                    raise LinkError("timed out waiting for the server")
                return []
        try:
            data = sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError, socket.timeout):
            return []
        except OSError as exc:
            raise LinkError(f"connection lost: {exc.strerror or exc}") from None
        if not data:
            raise LinkError("server closed the connection")
        return self._reader.feed(data)

    # --- streaming -----------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise LinkError("not connected")
        try:
            self._sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            # A partial send leaves the stream out of step: the connection is unusable now.
            self.close()
            raise LinkError(f"send failed: {getattr(exc, 'strerror', None) or exc}") from None

    def send_frame(self, sequence: int, packet: bytes) -> None:
        self._send(packet)

    def send_dropped(self, count: int) -> None:
        self._send(wire.dropped(count))

    def keepalive(self) -> None:
        self._send(wire.control(wire.MsgType.PING))

    def poll(self, timeout: float) -> Optional[int]:
        try:
            messages = self._read(timeout)
        except wire.ProtocolError as exc:
            self.close()
            raise LinkError(f"protocol error from server: {exc}") from None
        except LinkError:
            self.close()
            raise
        for msg in messages:
            if not isinstance(msg, wire.Control):
                continue
            if msg.type == wire.MsgType.ACK:
                seq = wire.parse_u64(msg.payload)
                self._acked = seq if self._acked is None else max(self._acked, seq)
            elif msg.type == wire.MsgType.ERROR:
                self.close()
                raise LinkError("server closed the link: " + wire.parse_error(msg.payload)[1])
        return self._acked

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
