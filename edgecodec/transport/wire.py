"""The edge-to-server wire format: small control messages interleaved with verbatim frame packets.

A frame is sent as the container packet itself (it starts with ``bitstream.MAGIC`` and carries its
own length and CRC). Everything else is a control message: an 8-byte header (``CTRL_MAGIC``,
type, flags, payload length) and a payload of at most 65535 bytes. The first four bytes therefore
tell a reader which of the two it is looking at. docs/protocol.md describes the exchange.

This module does no I/O: the TCP client feeds bytes to ``Reader``; the asyncio server reads
headers with ``readexactly`` and parses them with the same functions.
"""
from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Optional, Union

from edgecodec import bitstream
from edgecodec.errors import BitstreamError, EdgecodecError

PROTOCOL_VERSION = 1
CTRL_MAGIC = b"\x89ECM"
FRAME_MAGIC = bitstream.MAGIC
NONCE_SIZE = 32
MAC_SIZE = 32
STREAM_ID_SIZE = 8
NO_SEQUENCE = 2**64 - 1  # "nothing stored yet" in WELCOME
MAX_CONTROL_PAYLOAD = 0xFFFF
CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_CTRL = struct.Struct("<4sBBH")
CTRL_HEADER_SIZE = _CTRL.size  # 8
_HELLO = struct.Struct("<B8s8s32sB")  # version, model id, stream id, client nonce, id length
_WELCOME = struct.Struct("<QI32s")  # last stored sequence, max packet size, server proof
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class ProtocolError(EdgecodecError):
    """The peer broke the wire protocol (bad magic, unknown message, oversized packet)."""


class MsgType(enum.IntEnum):
    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    ACK = 5
    DROPPED = 6
    PING = 7
    ERROR = 8


class ErrorCode(enum.IntEnum):
    PROTOCOL = 1
    AUTH = 2
    TOO_LARGE = 3
    BAD_PACKET = 4
    BUSY = 5
    REPLACED = 6
    SHUTDOWN = 7
    IDLE = 8


def check_camera_id(camera_id: str) -> str:
    if not isinstance(camera_id, str) or not CAMERA_ID_RE.match(camera_id):
        raise EdgecodecError(
            f"invalid camera id {camera_id!r}: 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return camera_id


@dataclass(frozen=True)
class Hello:
    camera_id: str
    model_id: bytes
    stream_id: bytes
    nonce: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Welcome:
    last_sequence: Optional[int]
    max_packet: int
    proof: bytes


@dataclass(frozen=True)
class Control:
    type: MsgType
    payload: bytes


@dataclass(frozen=True)
class Frame:
    packet: bytes


Message = Union[Control, Frame]


# --- encoding -----------------------------------------------------------------------------

def control(kind: MsgType, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ProtocolError(f"control payload of {len(payload)} bytes is too long")
    return _CTRL.pack(CTRL_MAGIC, kind, 0, len(payload)) + payload


def hello(h: Hello) -> bytes:
    cid = check_camera_id(h.camera_id).encode()
    return control(MsgType.HELLO, _HELLO.pack(h.version, h.model_id, h.stream_id, h.nonce, len(cid)) + cid)


def welcome(w: Welcome) -> bytes:
    last = NO_SEQUENCE if w.last_sequence is None else w.last_sequence
    return control(MsgType.WELCOME, _WELCOME.pack(last, w.max_packet, w.proof))


def ack(sequence: int) -> bytes:
    return control(MsgType.ACK, _U64.pack(sequence))


def dropped(count: int) -> bytes:
    return control(MsgType.DROPPED, _U32.pack(min(count, 0xFFFFFFFF)))


def error(code: ErrorCode, message: str) -> bytes:
    return control(MsgType.ERROR, bytes([code]) + message.encode()[:1000])


# --- decoding -----------------------------------------------------------------------------

def parse_control_header(data: bytes) -> tuple[MsgType, int]:
    """Return (type, payload length) of an 8-byte control header."""
    magic, kind, _flags, length = _CTRL.unpack(data)
    if magic != CTRL_MAGIC:
        raise ProtocolError(f"expected a control message, got magic {magic!r}")
    try:
        return MsgType(kind), length
    except ValueError:
        raise ProtocolError(f"unknown control message type {kind}") from None


def frame_size(prefix: bytes, limit: int) -> int:
    """Total length of the frame packet whose ``bitstream.PREFIX_SIZE`` bytes are ``prefix``."""
    try:
        size = bitstream.packet_size(prefix)
    except BitstreamError as exc:
        raise ProtocolError(str(exc)) from None
    if size > limit:
        raise ProtocolError(f"frame packet of {size} bytes exceeds the limit of {limit}")
    return size


def parse_hello(payload: bytes) -> Hello:
    if len(payload) < _HELLO.size:
        raise ProtocolError("HELLO is truncated")
    version, model_id, stream_id, nonce, n = _HELLO.unpack_from(payload)
    raw = payload[_HELLO.size:]
    if len(raw) != n:
        raise ProtocolError("HELLO camera id length does not match")
    try:
        camera_id = check_camera_id(raw.decode())
    except (UnicodeDecodeError, EdgecodecError) as exc:
        raise ProtocolError(f"HELLO: {exc}") from None
    return Hello(camera_id, model_id, stream_id, nonce, version)


def parse_welcome(payload: bytes) -> Welcome:
    if len(payload) != _WELCOME.size:
        raise ProtocolError("WELCOME has the wrong size")
    last, max_packet, proof = _WELCOME.unpack(payload)
    return Welcome(None if last == NO_SEQUENCE else last, max_packet, proof)


def parse_u64(payload: bytes) -> int:
    if len(payload) != 8:
        raise ProtocolError("expected an 8-byte sequence number")
    return _U64.unpack(payload)[0]


def parse_u32(payload: bytes) -> int:
    if len(payload) != 4:
        raise ProtocolError("expected a 4-byte count")
    return _U32.unpack(payload)[0]


def parse_error(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 0, "unspecified error"
    return payload[0], payload[1:].decode(errors="replace")


class Reader:
    """Incremental parser: ``feed`` bytes as they arrive, get back whole messages in order."""

    def __init__(self, max_packet: int = bitstream.MAX_PACKET_SIZE):
        self.max_packet = max_packet
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while True:
            msg = self._next()
            if msg is None:
                return out
            out.append(msg)

    def _next(self) -> Optional[Message]:
        buf = self._buf
        if len(buf) < 4:
            return None
        magic = bytes(buf[:4])
        if magic == CTRL_MAGIC:
            if len(buf) < CTRL_HEADER_SIZE:
                return None
            kind, length = parse_control_header(bytes(buf[:CTRL_HEADER_SIZE]))
            end = CTRL_HEADER_SIZE + length
            if len(buf) < end:
                return None
            msg: Message = Control(kind, bytes(buf[CTRL_HEADER_SIZE:end]))
        elif magic == FRAME_MAGIC:
            if len(buf) < bitstream.PREFIX_SIZE:
                return None
            end = frame_size(bytes(buf[: bitstream.PREFIX_SIZE]), self.max_packet)
            if len(buf) < end:
                return None
            msg = Frame(bytes(buf[:end]))
        else:
            raise ProtocolError(f"unexpected bytes on the wire (magic {magic!r})")
        del buf[:end]
        return msg
