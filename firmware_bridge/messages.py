"""Message payloads: one small dataclass per message type, each packing to and from bytes.

Multi-byte integers are little-endian. Decoders ignore bytes after the fixed fields they know
(room for later minor additions) but reject payloads that are too short. PROTOCOL.md section 3 is
the normative table.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar


class MsgType:
    """Message type codes (the header's ``type`` byte)."""

    HELLO = 0x01
    HEARTBEAT = 0x02
    ACK = 0x03
    TRIGGER = 0x04
    SET_QUALITY = 0x05
    TELEMETRY = 0x06
    REQUEST = 0x07
    STATUS = 0x08
    FRAME_BEGIN = 0x10
    FRAME_CHUNK = 0x11
    FRAME_STATUS = 0x12
    FRAME_ABORT = 0x13


class AckResult:
    OK = 0
    UNSUPPORTED = 1
    INVALID = 2
    BUSY = 3


class XferState:
    """FRAME_STATUS ``state`` values."""

    RECEIVING = 0
    COMPLETE = 1
    UNKNOWN = 2       # the receiver holds no transfer with that id: send FRAME_BEGIN again
    TOO_LARGE = 3
    BAD_PARAMS = 4
    CRC_MISMATCH = 5  # all chunks arrived but the frame CRC failed; the receiver dropped them

    NAMES = {0: "receiving", 1: "complete", 2: "unknown", 3: "too_large", 4: "bad_params",
             5: "crc_mismatch"}


TRIGGER_SOURCES = {0: "other", 1: "pir", 2: "gpio", 3: "timer", 4: "manual", 5: "radio"}
ROLES = {0: "host", 1: "device"}
STATUS_MASK_BITS = 32
KV_MAX_ITEMS = 32


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise ValueError(f"{what} payload too short ({len(payload)} < {size} bytes)")


def pack_kv(items: dict[str, str]) -> bytes:
    """Key/value list: for each item, key length (1..255), key, value length (0..255), value; UTF-8."""
    out = bytearray()
    if len(items) > KV_MAX_ITEMS:
        raise ValueError(f"at most {KV_MAX_ITEMS} key/value items")
    for key, value in items.items():
        k, v = str(key).encode(), str(value).encode()
        if not 1 <= len(k) <= 255 or len(v) > 255:
            raise ValueError(f"key/value {key!r} too long or empty key")
        out += bytes([len(k)]) + k + bytes([len(v)]) + v
    return bytes(out)


def unpack_kv(data: bytes) -> dict[str, str]:
    items: dict[str, str] = {}
    i = 0
    while i < len(data):
        klen = data[i]
        if klen == 0 or i + 2 + klen > len(data):
            raise ValueError("truncated key/value item")
        key = data[i + 1:i + 1 + klen]
        vlen = data[i + 1 + klen]
        end = i + 2 + klen + vlen
        if end > len(data):
            raise ValueError("truncated key/value item")
        items[key.decode(errors="replace")] = data[i + 2 + klen:end].decode(errors="replace")
        i = end
        if len(items) > KV_MAX_ITEMS:
            raise ValueError("too many key/value items")
    return items


@dataclass
class Hello:
    """Introduces a peer: its role, receive limits and a boot id (a new id means the peer restarted)."""

    TYPE: ClassVar[int] = MsgType.HELLO
    _S: ClassVar[struct.Struct] = struct.Struct("<BHIBH")
    role: int = 0
    max_payload: int = 64
    max_frame: int = 0
    window: int = 1
    boot_id: int = 0
    name: str = ""

    def pack(self) -> bytes:
        name = self.name.encode()[:32]
        return self._S.pack(self.role, self.max_payload, self.max_frame, self.window, self.boot_id) + name

    @classmethod
    def unpack(cls, p: bytes) -> "Hello":
        _need(p, cls._S.size, "HELLO")
        role, mp, mf, win, boot = cls._S.unpack_from(p)
        return cls(role, mp, mf, win, boot, p[cls._S.size:cls._S.size + 32].decode(errors="replace"))


@dataclass
class Heartbeat:
    TYPE: ClassVar[int] = MsgType.HEARTBEAT
    uptime_ms: int = 0

    def pack(self) -> bytes:
        return struct.pack("<I", self.uptime_ms & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, p: bytes) -> "Heartbeat":
        _need(p, 4, "HEARTBEAT")
        return cls(*struct.unpack_from("<I", p))


@dataclass
class Ack:
    TYPE: ClassVar[int] = MsgType.ACK
    seq: int = 0
    result: int = AckResult.OK

    def pack(self) -> bytes:
        return bytes([self.seq & 0xFF, self.result & 0xFF])

    @classmethod
    def unpack(cls, p: bytes) -> "Ack":
        _need(p, 2, "ACK")
        return cls(p[0], p[1])


@dataclass
class Trigger:
    """The MCU saw an event (PIR, GPIO, timer...) and asks the host to capture."""

    TYPE: ClassVar[int] = MsgType.TRIGGER
    source: int = 0
    channel: int = 0
    timestamp_ms: int = 0

    @property
    def source_name(self) -> str:
        return TRIGGER_SOURCES.get(self.source, f"source{self.source}")

    def pack(self) -> bytes:
        return struct.pack("<BBI", self.source, self.channel, self.timestamp_ms & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, p: bytes) -> "Trigger":
        _need(p, 6, "TRIGGER")
        return cls(*struct.unpack_from("<BBI", p))


QUALITY_UNCHANGED = 0xFF


@dataclass
class SetQuality:
    """Ask the encoder for a quality level and/or a target bitrate. Quality ``QUALITY_UNCHANGED`` (0xFF)
    keeps the current one (so quality 0, the fewest bits, can be chosen); target_bps 0 means no target."""

    TYPE: ClassVar[int] = MsgType.SET_QUALITY
    quality: int = QUALITY_UNCHANGED
    target_bps: int = 0

    def pack(self) -> bytes:
        return struct.pack("<BI", self.quality, self.target_bps)

    @classmethod
    def unpack(cls, p: bytes) -> "SetQuality":
        _need(p, 5, "SET_QUALITY")
        return cls(*struct.unpack_from("<BI", p))


@dataclass
class Telemetry:
    """Sensor readings; ``None`` marks a reading the device does not have."""

    TYPE: ClassVar[int] = MsgType.TELEMETRY
    battery_mv: int | None = None
    battery_pct: int | None = None
    temperature_c: float | None = None
    values: dict[str, str] = field(default_factory=dict)

    def pack(self) -> bytes:
        mv = 0xFFFF if self.battery_mv is None else self.battery_mv
        pct = 0xFF if self.battery_pct is None else self.battery_pct
        temp = -0x8000 if self.temperature_c is None else int(round(self.temperature_c * 100))
        return struct.pack("<HBh", mv, pct, temp) + pack_kv(self.values)

    @classmethod
    def unpack(cls, p: bytes) -> "Telemetry":
        _need(p, 5, "TELEMETRY")
        mv, pct, temp = struct.unpack_from("<HBh", p)
        return cls(None if mv == 0xFFFF else mv, None if pct == 0xFF else pct,
                   None if temp == -0x8000 else temp / 100.0, unpack_kv(p[5:]))


@dataclass
class Request:
    """Ask the peer to send a message of type ``what`` (HELLO, TELEMETRY or STATUS)."""

    TYPE: ClassVar[int] = MsgType.REQUEST
    what: int = MsgType.TELEMETRY

    def pack(self) -> bytes:
        return bytes([self.what])

    @classmethod
    def unpack(cls, p: bytes) -> "Request":
        _need(p, 1, "REQUEST")
        return cls(p[0])


@dataclass
class Status:
    """Free-form state of a peer as key/value text (quality, frames sent, link counters...)."""

    TYPE: ClassVar[int] = MsgType.STATUS
    values: dict[str, str] = field(default_factory=dict)

    def pack(self) -> bytes:
        return pack_kv(self.values)

    @classmethod
    def unpack(cls, p: bytes) -> "Status":
        return cls(unpack_kv(p))


@dataclass
class FrameBegin:
    TYPE: ClassVar[int] = MsgType.FRAME_BEGIN
    _S: ClassVar[struct.Struct] = struct.Struct("<HIHI")
    xfer: int = 0
    total: int = 0
    chunk_size: int = 0
    crc: int = 0

    def pack(self) -> bytes:
        return self._S.pack(self.xfer, self.total, self.chunk_size, self.crc)

    @classmethod
    def unpack(cls, p: bytes) -> "FrameBegin":
        _need(p, cls._S.size, "FRAME_BEGIN")
        return cls(*cls._S.unpack_from(p))


@dataclass
class FrameChunk:
    TYPE: ClassVar[int] = MsgType.FRAME_CHUNK
    HEADER: ClassVar[int] = 4
    xfer: int = 0
    index: int = 0
    data: bytes = b""

    def pack(self) -> bytes:
        return struct.pack("<HH", self.xfer, self.index) + self.data

    @classmethod
    def unpack(cls, p: bytes) -> "FrameChunk":
        _need(p, 4, "FRAME_CHUNK")
        xfer, index = struct.unpack_from("<HH", p)
        return cls(xfer, index, bytes(p[4:]))


@dataclass
class FrameStatus:
    """Receiver state of a transfer: chunks below ``next`` all received, ``mask`` bit i = next+1+i."""

    TYPE: ClassVar[int] = MsgType.FRAME_STATUS
    _S: ClassVar[struct.Struct] = struct.Struct("<HBBHI")
    xfer: int = 0
    state: int = XferState.RECEIVING
    echo_seq: int = 0
    next: int = 0
    mask: int = 0

    def pack(self) -> bytes:
        return self._S.pack(self.xfer, self.state, self.echo_seq, self.next, self.mask)

    @classmethod
    def unpack(cls, p: bytes) -> "FrameStatus":
        _need(p, cls._S.size, "FRAME_STATUS")
        return cls(*cls._S.unpack_from(p))


@dataclass
class FrameAbort:
    TYPE: ClassVar[int] = MsgType.FRAME_ABORT
    xfer: int = 0
    reason: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HB", self.xfer, self.reason)

    @classmethod
    def unpack(cls, p: bytes) -> "FrameAbort":
        _need(p, 3, "FRAME_ABORT")
        return cls(*struct.unpack_from("<HB", p))


MESSAGE_CLASSES = {cls.TYPE: cls for cls in (Hello, Heartbeat, Ack, Trigger, SetQuality, Telemetry, Request,
                                             Status, FrameBegin, FrameChunk, FrameStatus, FrameAbort)}
TYPE_NAMES = {cls.TYPE: name for name, cls in (
    ("hello", Hello), ("heartbeat", Heartbeat), ("ack", Ack), ("trigger", Trigger),
    ("set_quality", SetQuality), ("telemetry", Telemetry), ("request", Request), ("status", Status),
    ("frame_begin", FrameBegin), ("frame_chunk", FrameChunk), ("frame_status", FrameStatus),
    ("frame_abort", FrameAbort))}


def unpack_message(type_: int, payload: bytes):
    """Return the message object for a frame's type and payload; ValueError if unknown or malformed."""
    cls = MESSAGE_CLASSES.get(type_)
    if cls is None:
        raise ValueError(f"unknown message type 0x{type_:02x}")
    return cls.unpack(payload)
