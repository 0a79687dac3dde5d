"""Link framing: CRC-32, COBS, and the frame header. The bottom layer: no package imports.

A frame on the wire is ``COBS(header + payload + crc32) + b"\\x00"``. PROTOCOL.md section 2 is the
normative description; this module and ``c/ebridge.c`` implement it byte for byte.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 1
HEADER_SIZE = 4
CRC_SIZE = 4
MIN_PAYLOAD = 64          # every implementation accepts payloads up to this size
MAX_PAYLOAD = 1024        # no implementation may send a larger payload
DELIMITER = 0

# Header flags.
FLAG_REPLY = 0x01         # the receiver must answer (HELLO, ACK or FRAME_STATUS, by message type)

_HEADER = struct.Struct("<BBBB")
_CRC = struct.Struct("<I")


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC (the zlib/Ethernet CRC): reflected poly 0xEDB88320, init and xorout 0xFFFFFFFF."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Encode without zero bytes; every block, including a trailing empty one, gets its code byte."""
    out = bytearray()
    for block in bytes(data).split(b"\x00"):
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Invert ``cobs_encode``; raise ValueError on a zero byte or a code that runs past the end."""
    out = bytearray()
    i, n = 0, len(data)
    if n == 0:
        raise ValueError("empty COBS block")
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise ValueError("bad COBS code")
        block = data[i + 1:end]
        if 0 in block:
            raise ValueError("zero byte inside a COBS block")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def max_wire_size(payload_size: int) -> int:
    """Largest encoded size, delimiter included, of a frame carrying ``payload_size`` bytes."""
    raw = HEADER_SIZE + payload_size + CRC_SIZE
    return raw + raw // 254 + 2


@dataclass(frozen=True)
class Frame:
    """One decoded link frame: header fields and the raw message payload."""

    type: int
    flags: int
    seq: int
    payload: bytes
    version: int = VERSION

    @property
    def reply_requested(self) -> bool:
        return bool(self.flags & FLAG_REPLY)


def encode_frame(type_: int, payload: bytes = b"", *, flags: int = 0, seq: int = 0,
                 version: int = VERSION) -> bytes:
    """Return the wire bytes (COBS, delimiter included) of one frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = _HEADER.pack(version, type_ & 0xFF, flags & 0xFF, seq & 0xFF) + bytes(payload)
    return cobs_encode(body + _CRC.pack(crc32(body))) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame from its bytes between delimiters; raise ValueError naming what is wrong."""
    raw = cobs_decode(encoded)
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise ValueError("frame too short")
    body, (crc,) = raw[:-CRC_SIZE], _CRC.unpack(raw[-CRC_SIZE:])
    if crc32(body) != crc:
        raise ValueError("CRC mismatch")
    version, type_, flags, seq = _HEADER.unpack_from(body)
    if version != VERSION:
        raise ValueError(f"unsupported protocol version {version}")
    return Frame(type_, flags, seq, body[HEADER_SIZE:], version)


class FrameDecoder:
    """Turn a byte stream into frames; drop garbage and resynchronise on the next delimiter.

    Memory is bounded: bytes beyond ``max_payload``'s wire size are discarded until the next
    delimiter. ``stats`` counts frames and each kind of error.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_encoded = max_wire_size(max_payload) - 1
        self._buf = bytearray()
        self._overflow = False
        self.stats = {"frames": 0, "crc_errors": 0, "cobs_errors": 0, "too_long": 0, "too_short": 0,
                      "bad_version": 0, "bytes": 0}

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the complete, valid frames it finished."""
        frames: list[Frame] = []
        self.stats["bytes"] += len(data)
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                return frames
            self._append(data[start:end])
            frame = self._finish()
            if frame is not None:
                frames.append(frame)
            start = end + 1

    def _append(self, chunk: bytes) -> None:
        if self._overflow or not chunk:
            return
        if len(self._buf) + len(chunk) > self.max_encoded:
            self._overflow = True
            self._buf.clear()
        else:
            self._buf += chunk

    def _finish(self) -> Frame | None:
        encoded, overflow = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            self.stats["too_long"] += 1
            return None
        if not encoded:
            return None  # back-to-back delimiters: idle fill, not an error
        try:
            frame = decode_frame(encoded)
        except ValueError as exc:
            msg = str(exc)
            key = ("crc_errors" if "CRC" in msg else "bad_version" if "version" in msg
                   else "too_short" if "short" in msg else "cobs_errors")
            self.stats[key] += 1
            return None
        self.stats["frames"] += 1
        return frame
