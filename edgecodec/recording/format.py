"""The recording file layout as bytes: file header, record header, index payload. No I/O here.

docs/recording.md describes every field; ``tests/test_recording_format.py`` checks it against the
tables below. A record is self-checking (length + CRC32), so a reader can tell a complete record
from a torn or damaged one without trusting anything after it.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from edgecodec.bitstream import MAX_PACKET_SIZE
from edgecodec.errors import EdgecodecError

MAGIC = b"\x89ECR"
VERSION = 1
SUFFIX = ".ecr"
FRAME_SYNC = b"\xe5ECF"
INDEX_SYNC = b"\xe5ECI"
SYNCS = (FRAME_SYNC, INDEX_SYNC)
MAX_PAYLOAD = MAX_PACKET_SIZE
MAX_CAMERA_ID = 255

#: File header fields before the camera id: (name, struct code). Little-endian, no padding.
FILE_FIELDS = (
    ("magic", "4s"),
    ("version", "B"),
    ("camera_id_length", "B"),
    ("reserved", "2s"),
    ("created_us", "Q"),
    ("index_every", "I"),
)
#: Record header fields; the CRC covers these bytes before it, then the payload.
RECORD_FIELDS = (
    ("sync", "4s"),
    ("length", "I"),
    ("sequence", "Q"),
    ("timestamp_us", "Q"),
    ("received_us", "Q"),
    ("crc32", "I"),
)
#: Index payload: the previous index record's offset (0: none) and the entry count, then entries.
INDEX_FIELDS = (("previous", "Q"), ("count", "I"))
INDEX_ENTRY_FIELDS = (("offset", "Q"), ("timestamp_us", "Q"), ("sequence", "Q"))

_FILE = struct.Struct("<" + "".join(c for _, c in FILE_FIELDS))
_RECORD = struct.Struct("<" + "".join(c for _, c in RECORD_FIELDS))
_INDEX = struct.Struct("<" + "".join(c for _, c in INDEX_FIELDS))
_ENTRY = struct.Struct("<" + "".join(c for _, c in INDEX_ENTRY_FIELDS))
_CRC = struct.Struct("<I")
RECORD_HEADER_SIZE = _RECORD.size  # 36
_CRC_AT = RECORD_HEADER_SIZE - _CRC.size


class RecordingError(EdgecodecError):
    """A file is not a recording, or its header is damaged beyond use."""


@dataclass(frozen=True)
class FileHeader:
    camera_id: str
    created_us: int
    index_every: int

    @property
    def size(self) -> int:
        return _FILE.size + len(self.camera_id.encode()) + _CRC.size


@dataclass(frozen=True)
class RecordHeader:
    sync: bytes
    length: int
    sequence: int
    timestamp_us: int
    received_us: int
    crc32: int

    @property
    def is_index(self) -> bool:
        return self.sync == INDEX_SYNC


@dataclass(frozen=True)
class IndexEntry:
    offset: int
    timestamp_us: int
    sequence: int


def pack_file_header(header: FileHeader) -> bytes:
    camera = header.camera_id.encode()
    if not 1 <= len(camera) <= MAX_CAMERA_ID:
        raise RecordingError(f"camera id must be 1..{MAX_CAMERA_ID} bytes of UTF-8, got {header.camera_id!r}")
    body = _FILE.pack(MAGIC, VERSION, len(camera), b"\0\0", header.created_us, header.index_every) + camera
    return body + _CRC.pack(zlib.crc32(body))


def file_header_size(prefix: bytes) -> int:
    """Total file-header length from its fixed part; checks magic and version."""
    if len(prefix) < _FILE.size:
        raise RecordingError(f"too short for a recording ({len(prefix)} bytes)")
    magic, version, camera_len, *_ = _FILE.unpack_from(prefix)
    if magic != MAGIC:
        raise RecordingError("not an edgecodec recording (bad magic)")
    if version != VERSION:
        raise RecordingError(f"unsupported recording version {version}; this edgecodec reads {VERSION}")
    return _FILE.size + camera_len + _CRC.size


def unpack_file_header(data: bytes) -> FileHeader:
    size = file_header_size(data)
    if len(data) < size:
        raise RecordingError(f"truncated recording header ({len(data)} of {size} bytes)")
    (crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if zlib.crc32(data[: size - _CRC.size]) != crc:
        raise RecordingError("recording header is corrupt (CRC mismatch)")
    _magic, _version, camera_len, _reserved, created_us, index_every = _FILE.unpack_from(data)
    camera = data[_FILE.size : _FILE.size + camera_len]
    try:
        camera_id = camera.decode()
    except UnicodeDecodeError:
        raise RecordingError("recording header holds an invalid camera id") from None
    return FileHeader(camera_id, created_us, index_every)


def pack_record(sync: bytes, payload: bytes, sequence: int, timestamp_us: int, received_us: int) -> bytes:
    """One complete record: header with CRC, then the payload."""
    if len(payload) > MAX_PAYLOAD:
        raise RecordingError(f"record payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = _RECORD.pack(sync, len(payload), sequence, timestamp_us, received_us, 0)[:_CRC_AT]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + _CRC.pack(crc) + payload


def unpack_record_header(data: bytes) -> RecordHeader | None:
    """The record header at the start of ``data``, or None if it cannot be one (sync, length)."""
    if len(data) < RECORD_HEADER_SIZE:
        return None
    header = RecordHeader(*_RECORD.unpack_from(data))
    if header.sync not in SYNCS or header.length > MAX_PAYLOAD:
        return None
    return header


def record_intact(head: bytes, header: RecordHeader, payload: bytes) -> bool:
    return len(payload) == header.length and zlib.crc32(payload, zlib.crc32(head[:_CRC_AT])) == header.crc32


def pack_index(previous: int, entries: list[IndexEntry]) -> bytes:
    return _INDEX.pack(previous, len(entries)) + b"".join(
        _ENTRY.pack(e.offset, e.timestamp_us, e.sequence) for e in entries
    )


def unpack_index(payload: bytes) -> tuple[int, list[IndexEntry]]:
    """(previous index offset, entries); RecordingError if the payload's count does not fit."""
    if len(payload) < _INDEX.size:
        raise RecordingError("index record too short")
    previous, count = _INDEX.unpack_from(payload)
    if _INDEX.size + count * _ENTRY.size != len(payload):
        raise RecordingError("index record length does not match its entry count")
    entries = [IndexEntry(*_ENTRY.unpack_from(payload, _INDEX.size + i * _ENTRY.size)) for i in range(count)]
    return previous, entries
