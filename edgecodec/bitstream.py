"""The edgecodec container: one packet format for ``.ecc`` image files and for streamed frames.

A packet is a fixed 44-byte little-endian header, a table of stream lengths, the coded streams,
and a CRC32 over everything before it. The first 12 bytes (``PREFIX_SIZE``) hold the total
length, so a transport can frame packets with ``packet_size``. The layout is documented field by
field in docs/bitstream.md; ``tests/test_bitstream.py`` checks that document against ``FIELDS``.

    >>> data = pack(Header(kind=Kind.IMAGE, model_id=mid, width=640, height=480, channels=3,
    ...                    quality=3), [y_stream, z_stream])
    >>> header, streams = unpack(data, expect_model_id=mid)

This module depends on nothing else in edgecodec but its errors.
"""
from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Optional, Sequence, Union

from edgecodec.errors import BitstreamError, ModelMismatchError

__all__ = [
    "Header", "Kind", "pack", "unpack", "packet_size", "read_packet",
    "MAGIC", "VERSION", "VERSIONS", "PREFIX_SIZE", "HEADER_SIZE", "MAX_PACKET_SIZE", "MAX_STREAMS",
]

MAGIC = b"\x89ECC"
# Version 2 adds delta frames (Kind.DELTA) and the ``reference`` field they need. A writer uses the lowest
# version that can express a packet, so images and key frames stay readable by version-1 readers.
VERSION = 2
VERSIONS = (1, 2)
MODEL_ID_SIZE = 8
MAX_STREAMS = 16
MAX_PACKET_SIZE = 64 << 20  # 64 MiB: far above any image, small enough to allocate blindly
CHANNELS = (1, 3, 4)

#: Header fields in order: (name, struct code). Little-endian, no padding.
FIELDS = (
    ("magic", "4s"),
    ("version", "B"),
    ("kind", "B"),
    ("channels", "B"),
    ("quality", "B"),
    ("packet_length", "I"),
    ("model_id", "8s"),
    ("width", "H"),
    ("height", "H"),
    ("sequence", "Q"),
    ("timestamp_us", "Q"),
    ("n_streams", "B"),
    ("reference", "H"),
    ("reserved", "1s"),
)
_HEADER = struct.Struct("<" + "".join(code for _, code in FIELDS))
_PREFIX = struct.Struct("<4sBBBBI")
_LENGTH = struct.Struct("<I")
HEADER_SIZE = _HEADER.size  # 44
PREFIX_SIZE = _PREFIX.size  # 12: magic .. packet_length
CRC_SIZE = 4
MIN_PACKET_SIZE = HEADER_SIZE + CRC_SIZE

BytesLike = Union[bytes, bytearray, memoryview]


class Kind(enum.IntEnum):
    """What a packet carries: a standalone image, a self-contained frame of a stream (a key frame), or
    a frame coded against an earlier frame of its stream (``Header.reference`` says which)."""

    IMAGE = 0
    FRAME = 1
    DELTA = 2


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the coded streams; validated on construction."""

    kind: Kind
    model_id: bytes
    width: int
    height: int
    channels: int
    quality: int
    sequence: int = 0
    timestamp_us: int = 0
    reference: int = 0  # DELTA only: the frame it needs is ``sequence - reference``; 0 otherwise

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", Kind(self.kind))
        except ValueError:
            raise BitstreamError(f"unknown packet kind {self.kind!r}") from None
        if not isinstance(self.model_id, (bytes, bytearray)) or len(self.model_id) != MODEL_ID_SIZE:
            raise BitstreamError(f"model_id must be {MODEL_ID_SIZE} bytes, got {self.model_id!r}")
        object.__setattr__(self, "model_id", bytes(self.model_id))
        _check_int("width", self.width, 1, 0xFFFF)
        _check_int("height", self.height, 1, 0xFFFF)
        if self.channels not in CHANNELS:
            raise BitstreamError(f"channels must be one of {CHANNELS}, got {self.channels!r}")
        _check_int("quality", self.quality, 0, 0xFF)
        _check_int("sequence", self.sequence, 0, 2**64 - 1)
        _check_int("timestamp_us", self.timestamp_us, 0, 2**64 - 1)
        _check_int("reference", self.reference, 0, 0xFFFF)
        if (self.kind == Kind.DELTA) != (self.reference > 0):
            raise BitstreamError("a delta frame names its reference (reference > 0); other kinds have none")
        if self.reference > self.sequence:
            raise BitstreamError(f"reference {self.reference} reaches before frame 0 (sequence {self.sequence})")

    @property
    def reference_sequence(self) -> Optional[int]:
        """The sequence number of the frame this packet is coded against, or None."""
        return self.sequence - self.reference if self.reference else None

    @property
    def version(self) -> int:
        """The bitstream version this header is written with: the lowest that expresses it."""
        return 2 if self.kind == Kind.DELTA else 1


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BitstreamError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def pack(header: Header, streams: Sequence[BytesLike]) -> bytes:
    """Return the packet carrying ``header`` and the coded ``streams``."""
    if not isinstance(header, Header):
        raise TypeError(f"header must be a Header, not {type(header).__name__}")
    streams = [bytes(s) for s in streams]
    if len(streams) > MAX_STREAMS:
        raise BitstreamError(f"{len(streams)} streams; at most {MAX_STREAMS} fit in a packet")
    total = HEADER_SIZE + _LENGTH.size * len(streams) + sum(map(len, streams)) + CRC_SIZE
    if total > MAX_PACKET_SIZE:
        raise BitstreamError(f"packet would be {total} bytes; the limit is {MAX_PACKET_SIZE}")
    parts = [
        _HEADER.pack(
            MAGIC, header.version, header.kind, header.channels, header.quality, total, header.model_id,
            header.width, header.height, header.sequence, header.timestamp_us, len(streams),
            header.reference, b"\0",
        ),
        *(_LENGTH.pack(len(s)) for s in streams),
        *streams,
    ]
    body = b"".join(parts)
    return body + _LENGTH.pack(zlib.crc32(body))


def packet_size(prefix: BytesLike) -> int:
    """Return a packet's total length from its first ``PREFIX_SIZE`` bytes (more are ignored)."""
    if len(prefix) < PREFIX_SIZE:
        raise BitstreamError(f"need {PREFIX_SIZE} bytes to size a packet, got {len(prefix)}")
    magic, version, kind, channels, _quality, length = _PREFIX.unpack_from(prefix)
    if magic != MAGIC:
        raise BitstreamError(f"not an edgecodec packet (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version not in VERSIONS:
        raise BitstreamError(
            f"unsupported bitstream version {version}; this edgecodec reads versions 1 to {VERSION}"
        )
    if kind not in tuple(Kind) or (version == 1 and kind == Kind.DELTA):
        raise BitstreamError(f"unknown packet kind {kind} in a version {version} packet")
    if channels not in CHANNELS:
        raise BitstreamError(f"invalid channel count {channels}")
    if not MIN_PACKET_SIZE <= length <= MAX_PACKET_SIZE:
        raise BitstreamError(
            f"packet length {length} outside [{MIN_PACKET_SIZE}, {MAX_PACKET_SIZE}]"
        )
    return length


def unpack(data: BytesLike, expect_model_id: Optional[bytes] = None) -> tuple[Header, list[bytes]]:
    """Parse and verify one whole packet; return its header and coded streams.

    Raises BitstreamError if ``data`` is not exactly one intact packet of a known version, and
    ModelMismatchError if ``expect_model_id`` is given and the packet names another model.
    """
    data = memoryview(data).cast("B")
    length = packet_size(data)
    if len(data) < length:
        raise BitstreamError(f"truncated packet: {len(data)} of {length} bytes")
    if len(data) > length:
        raise BitstreamError(f"{len(data) - length} unexpected bytes after the packet")
    (crc,) = _LENGTH.unpack_from(data, length - CRC_SIZE)
    if zlib.crc32(data[: length - CRC_SIZE]) != crc:
        raise BitstreamError("packet is corrupt (CRC mismatch)")
    fields = dict(zip((name for name, _ in FIELDS), _HEADER.unpack_from(data)))
    n = fields["n_streams"]
    if n > MAX_STREAMS:
        raise BitstreamError(f"{n} streams declared; at most {MAX_STREAMS} are allowed")
    if fields["reserved"] != b"\0" or (fields["version"] == 1 and fields["reference"]):
        raise BitstreamError("reserved header bytes are not zero")
    start = HEADER_SIZE + 4 * n
    if start + CRC_SIZE > length:
        raise BitstreamError(f"{n} streams declared, but their lengths do not fit in the packet")
    lengths = [_LENGTH.unpack_from(data, HEADER_SIZE + 4 * i)[0] for i in range(n)]
    if start + sum(lengths) + CRC_SIZE != length:
        raise BitstreamError("stream lengths do not add up to the packet length")
    streams = []
    for size in lengths:
        streams.append(bytes(data[start : start + size]))
        start += size
    try:
        header = Header(**{k: fields[k] for k in Header.__dataclass_fields__})
    except BitstreamError as exc:
        raise BitstreamError(f"invalid header: {exc}") from None
    if expect_model_id is not None and header.model_id != bytes(expect_model_id):
        raise ModelMismatchError(
            f"bitstream was encoded with model {header.model_id.hex()}, but the loaded model is "
            f"{bytes(expect_model_id).hex()}"
        )
    return header, streams


def read_packet(fileobj: BinaryIO) -> Optional[bytes]:
    """Read one whole packet from a blocking binary file; None at a clean end of file."""
    prefix = _read_exact(fileobj, PREFIX_SIZE)
    if not prefix:
        return None
    if len(prefix) < PREFIX_SIZE:
        raise BitstreamError(f"truncated packet: end of file after {len(prefix)} bytes")
    length = packet_size(prefix)
    rest = _read_exact(fileobj, length - PREFIX_SIZE)
    if len(rest) < length - PREFIX_SIZE:
        raise BitstreamError(
            f"truncated packet: end of file after {PREFIX_SIZE + len(rest)} of {length} bytes"
        )
    return prefix + rest


def _read_exact(fileobj: BinaryIO, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = fileobj.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
