"""The asyncio TCP/TLS listener: many cameras at once, each behind the handshake and limits of the protocol."""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from typing import Optional

from edgecodec import bitstream
from edgecodec.errors import BitstreamError
from edgecodec.server.ingest import Ingest
from edgecodec.transport import auth, wire

log = logging.getLogger(__name__)

MAX_WRITE_BACKLOG = 1 << 20  # a client that never reads its acks is dropped past this


class Refused(Exception):
    """Close this connection, after telling the client why."""

    def __init__(self, code: wire.ErrorCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class Session:
    camera_id: str
    hello: wire.Hello
    peer: str
    writer: asyncio.StreamWriter
    pending_ack: Optional[int] = None
    ack_scheduled: bool = False
    frames: int = 0
    bytes_in: int = 0


class _IdleWatch:
    """Close a connection that completes no message for ``idle`` s (checked every ``idle`` s): one
    timer per connection instead of a timeout around every read, which costs more than the read."""

    def __init__(self, session: Session, idle: float):
        self.session = session
        self.idle = idle
        self.fired = False
        self._seen = -1
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(idle, self._check)

    def _check(self) -> None:
        if self.session.bytes_in == self._seen:
            self.fired = True
            self.session.writer.write(wire.error(wire.ErrorCode.IDLE, "timed out: nothing received"))
            self.session.writer.close()
            return
        self._seen = self.session.bytes_in
        self._handle = self._loop.call_later(self.idle, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


class TcpIngestServer:
    """Accepts edge connections and feeds their frames to an ``Ingest``; start/close like every stage."""

    def __init__(self, ingest: Ingest, ssl_context: Optional[ssl.SSLContext] = None):
        self.ingest = ingest
        self.limits = ingest.limits
        self.ssl_context = ssl_context
        self._server: Optional[asyncio.AbstractServer] = None
        self._active = 0
        self._sessions: dict[str, Session] = {}
        self._handlers: set[asyncio.Task] = set()
        self.address: Optional[tuple[str, int]] = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._client, host, port, ssl=self.ssl_context,
                                                  ssl_handshake_timeout=self.limits.handshake_timeout
                                                  if self.ssl_context else None)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("listening on %s:%d%s", *self.address, " (TLS)" if self.ssl_context else "")
        return self.address

    async def close(self, timeout: float = 2.0) -> None:
        """Stop accepting, acknowledge what was stored, then close every connection."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            self._flush_ack(session)
            self._refuse(session.writer, wire.ErrorCode.SHUTDOWN, "server shutting down")
        if self._handlers:
            _, pending = await asyncio.wait(list(self._handlers), timeout=timeout)
            for task in pending:
                task.cancel()
        self.ingest.watermarks.flush()

    # --- one connection ------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        session = None
        self._active += 1
        try:
            if self._active > self.limits.max_connections:
                log.warning("refused %s: %d connections already open", peer, self.limits.max_connections)
                raise Refused(wire.ErrorCode.BUSY, "too many connections")
            session = await asyncio.wait_for(self._handshake(reader, writer, peer),
                                             self.limits.handshake_timeout)
            await self._stream(reader, session)
        except Refused as exc:
            self._refuse(writer, exc.code, str(exc))
        except asyncio.TimeoutError:
            log.warning("%s %s: timed out", session.camera_id if session else "client", peer)
            if not writer.is_closing():
                self._refuse(writer, wire.ErrorCode.IDLE, "timed out")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            if session:
                log.info("camera %s (%s) disconnected: %s", session.camera_id, peer,
                         type(exc).__name__)
        except asyncio.CancelledError:
            pass
        finally:
            self._active -= 1
            self._handlers.discard(task)
            if session is not None:
                self._flush_ack(session)
                if self._sessions.get(session.camera_id) is session:
                    del self._sessions[session.camera_id]
                    self.ingest.set_connected(session.camera_id, False)
            writer.close()

    def _refuse(self, writer: asyncio.StreamWriter, code: wire.ErrorCode, message: str) -> None:
        try:
            writer.write(wire.error(code, message))
            writer.close()
        except (ConnectionError, RuntimeError):
            pass

    async def _read_control(self, reader: asyncio.StreamReader, expect: wire.MsgType) -> bytes:
        head = await reader.readexactly(wire.CTRL_HEADER_SIZE)
        try:
            kind, length = wire.parse_control_header(head)
        except wire.ProtocolError as exc:
            raise Refused(wire.ErrorCode.PROTOCOL, str(exc)) from None
        if kind != expect:
            raise Refused(wire.ErrorCode.PROTOCOL, f"expected {expect.name}, got {kind.name}")
        return await reader.readexactly(length)

    async def _handshake(self, reader, writer, peer: str) -> Session:
        try:
            hello = wire.parse_hello(await self._read_control(reader, wire.MsgType.HELLO))
        except wire.ProtocolError as exc:
            raise Refused(wire.ErrorCode.PROTOCOL, str(exc)) from None
        if hello.version != wire.PROTOCOL_VERSION:
            raise Refused(wire.ErrorCode.PROTOCOL, f"protocol version {hello.version} not supported "
                                                   f"(this server speaks {wire.PROTOCOL_VERSION})")
        challenge = os.urandom(wire.NONCE_SIZE)
        writer.write(wire.control(wire.MsgType.CHALLENGE, challenge))
        proof = await self._read_control(reader, wire.MsgType.AUTH)
        secret = self.ingest.secret(hello.camera_id)
        # Unknown cameras get a challenge too, so the refusal does not reveal which ids exist.
        if secret is None or not auth.verify(auth.client_proof(secret, challenge, hello), proof):
            self.ingest.auth_failed(hello.camera_id, peer,
                                    "unknown camera" if secret is None else "wrong secret")
            raise Refused(wire.ErrorCode.AUTH, "authentication failed")
        last = self.ingest.watermarks.get(hello.camera_id, hello.stream_id)
        writer.write(wire.welcome(wire.Welcome(last, self.limits.max_packet,
                                               auth.server_proof(secret, challenge, hello, last))))
        session = Session(hello.camera_id, hello, peer, writer)
        old = self._sessions.get(hello.camera_id)
        if old is not None:
            log.info("camera %s reconnected from %s; closing its old link from %s",
                     hello.camera_id, peer, old.peer)
            self._refuse(old.writer, wire.ErrorCode.REPLACED, "replaced by a newer connection")
        self._sessions[hello.camera_id] = session
        self.ingest.set_connected(hello.camera_id, True)
        log.info("camera %s connected from %s (model %s, resuming after %s)", hello.camera_id, peer,
                 hello.model_id.hex(), "nothing" if last is None else last)
        return session

    async def _stream(self, reader: asyncio.StreamReader, session: Session) -> None:
        watchdog = _IdleWatch(session, self.limits.idle_timeout)
        try:
            await self._read_frames(reader, session)
        except (asyncio.IncompleteReadError, ConnectionError):
            if watchdog.fired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            watchdog.cancel()

    async def _read_frames(self, reader: asyncio.StreamReader, session: Session) -> None:
        while True:
            magic = await reader.readexactly(4)
            if magic == wire.FRAME_MAGIC:
                rest = await reader.readexactly(bitstream.PREFIX_SIZE - 4)
                try:
                    size = wire.frame_size(magic + rest, self.limits.max_packet)
                except wire.ProtocolError as exc:
                    log.warning("camera %s (%s): %s", session.camera_id, session.peer, exc)
                    self.ingest.reject(session.camera_id)
                    raise Refused(wire.ErrorCode.TOO_LARGE, str(exc)) from None
                body = await reader.readexactly(size - bitstream.PREFIX_SIZE)
                try:
                    header, _new = self.ingest.accept(session.camera_id, session.hello.stream_id,
                                                      magic + rest + body, session.hello.model_id)
                except BitstreamError as exc:
                    log.warning("camera %s (%s): bad frame packet: %s", session.camera_id,
                                session.peer, exc)
                    raise Refused(wire.ErrorCode.BAD_PACKET, str(exc)) from None
                session.frames += 1
                session.bytes_in += size
                self._schedule_ack(session, header.sequence)
            elif magic == wire.CTRL_MAGIC:
                head = magic + await reader.readexactly(4)
                try:
                    kind, length = wire.parse_control_header(head)
                    payload = await reader.readexactly(length)
                    session.bytes_in += wire.CTRL_HEADER_SIZE + length
                    if kind == wire.MsgType.DROPPED:
                        self.ingest.edge_dropped(session.camera_id, wire.parse_u32(payload))
                    elif kind != wire.MsgType.PING:
                        raise wire.ProtocolError(f"unexpected {kind.name} while streaming")
                except wire.ProtocolError as exc:
                    raise Refused(wire.ErrorCode.PROTOCOL, str(exc)) from None
            else:
                log.warning("camera %s (%s): garbage on the wire (%r)", session.camera_id,
                            session.peer, magic)
                self.ingest.reject(session.camera_id)
                raise Refused(wire.ErrorCode.PROTOCOL, f"unexpected bytes {magic!r}")

    # --- acknowledgements ----------------------------------------------------------------

    def _schedule_ack(self, session: Session, sequence: int) -> None:
        """Coalesce: one ACK for all the frames read in one go."""
        session.pending_ack = sequence
        if not session.ack_scheduled:
            session.ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_ack, session)

    def _flush_ack(self, session: Session) -> None:
        session.ack_scheduled = False
        if session.pending_ack is None or session.writer.is_closing():
            return
        session.writer.write(wire.ack(session.pending_ack))
        session.pending_ack = None
        if session.writer.transport.get_write_buffer_size() > MAX_WRITE_BACKLOG:
            log.warning("camera %s (%s) does not read its acknowledgements; closing",
                        session.camera_id, session.peer)
            session.writer.transport.abort()
