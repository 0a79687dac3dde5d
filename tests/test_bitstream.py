"""The packet container: round trips, strict rejection of damage, framing, and its document."""
from __future__ import annotations

import io
import pathlib
import re
import struct
import zlib

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.bitstream import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    MAX_STREAMS,
    PREFIX_SIZE,
    Header,
    Kind,
    pack,
    packet_size,
    read_packet,
    unpack,
)
from edgecodec.errors import BitstreamError, ModelMismatchError

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bitstream.md"
MODEL = bytes.fromhex("0123456789abcdef")


def frame_header(**changes) -> Header:
    fields = dict(kind=Kind.FRAME, model_id=MODEL, width=640, height=480, channels=3, quality=3,
                  sequence=7, timestamp_us=1_700_000_000_000_000)
    fields.update(changes)
    return Header(**fields)


def example_packet() -> bytes:
    return pack(frame_header(), [b"\xa5\x5a\x01", b"\xff"])


def with_crc(body: bytes) -> bytes:
    """Re-seal an edited packet so that only the edit, not the CRC, can be the complaint."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


# ---------------------------------------------------------------- round trips


def test_image_round_trip_with_header_and_streams():
    header = Header(kind=Kind.IMAGE, model_id=b"12345678", width=17, height=9, channels=1, quality=0)
    streams = [b"", b"\x00" * 100, bytes(range(256))]
    assert unpack(pack(header, streams)) == (header, streams)


def test_frame_round_trip_at_field_limits():
    header = frame_header(width=65535, height=65535, channels=4, quality=255,
                          sequence=2**64 - 1, timestamp_us=2**64 - 1)
    streams = [bytes([k]) * k for k in range(MAX_STREAMS)]
    got, got_streams = unpack(pack(header, streams), expect_model_id=MODEL)
    assert got == header and got_streams == streams and got.kind is Kind.FRAME


def test_packet_without_streams_is_valid():
    data = pack(frame_header(), [])
    assert len(data) == HEADER_SIZE + 4
    assert unpack(data) == (frame_header(), [])


def test_unpack_accepts_bytearray_and_memoryview():
    data = example_packet()
    assert unpack(bytearray(data)) == unpack(memoryview(data)) == unpack(data)


# ---------------------------------------------------------------- damage


def test_truncation_at_every_byte_offset_raises():
    data = example_packet()
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:cut])


def test_every_single_bit_flip_is_detected_as_corruption():
    data = example_packet()
    for bit in range(8 * len(data)):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(BitstreamError) as info:
            unpack(bytes(damaged), expect_model_id=MODEL)
        assert not isinstance(info.value, ModelMismatchError), f"bit {bit} blamed on the model"


def test_trailing_bytes_after_the_packet_raise():
    with pytest.raises(BitstreamError, match="unexpected bytes after"):
        unpack(example_packet() + b"\0")


def test_wrong_model_raises_model_mismatch_naming_both_ids():
    with pytest.raises(ModelMismatchError, match="0123456789abcdef.*6f746865726d6f64"):
        unpack(example_packet(), expect_model_id=b"othermod")


def test_unknown_version_raises_clear_error():
    data = bytearray(example_packet())
    data[4] = 3
    with pytest.raises(BitstreamError, match="unsupported bitstream version 3"):
        unpack(with_crc(bytes(data)))


def test_bad_magic_raises_clear_error():
    with pytest.raises(BitstreamError, match="not an edgecodec packet"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(60))


@pytest.mark.parametrize(
    "offset, value, match",
    [
        (5, b"\x07", "unknown packet kind 7"),
        (6, b"\x02", "invalid channel count 2"),
        (8, struct.pack("<I", 2**32 - 1), "outside"),
        (8, struct.pack("<I", 47), "outside"),
        (40, b"\x11", "17 streams"),
        (41, b"\x01", "reserved"),
        (44, struct.pack("<I", 4), "do not add up"),
        (20, b"\0\0", "width must be"),
        (22, b"\0\0", "height must be"),
    ],
)
def test_insane_fields_with_a_valid_crc_are_rejected(offset, value, match):
    data = bytearray(example_packet())
    data[offset : offset + len(value)] = value
    with pytest.raises(BitstreamError, match=match):
        unpack(with_crc(bytes(data)))


def test_random_and_mutated_packets_only_raise_bitstream_errors():
    rng = np.random.default_rng(0)
    good = [example_packet(), pack(frame_header(kind=Kind.IMAGE), [bytes(50)] * 3)]
    accepted = 0
    for k in range(5000):
        if k % 2:
            data = bytearray(rng.bytes(int(rng.integers(0, 120))))
            if k % 4 == 1 and len(data) >= 4:
                data[:5] = bitstream.MAGIC + b"\x01"  # get past the magic check
        else:
            data = bytearray(good[k % 4 // 2])
            for _ in range(int(rng.integers(1, 4))):
                at = int(rng.integers(len(data)))
                data[at] = int(rng.integers(256))
            if k % 8 == 0:
                data = bytearray(with_crc(bytes(data)))  # corrupt the fields, not the CRC
        try:
            header, streams = unpack(bytes(data))
        except BitstreamError:
            continue
        accepted += 1
        assert isinstance(header, Header) and all(isinstance(s, bytes) for s in streams)
    assert accepted > 0  # some CRC-resealed mutations are valid packets


# ---------------------------------------------------------------- framing


def test_packet_size_reads_the_length_from_the_prefix():
    data = example_packet()
    assert packet_size(data[:PREFIX_SIZE]) == len(data) == packet_size(data)


def test_packet_size_needs_a_whole_prefix():
    with pytest.raises(BitstreamError, match=f"need {PREFIX_SIZE} bytes"):
        packet_size(example_packet()[: PREFIX_SIZE - 1])


def test_read_packet_frames_consecutive_packets_then_returns_none():
    packets = [example_packet(), pack(frame_header(sequence=8), [b"x" * 1000]), example_packet()]
    stream = io.BytesIO(b"".join(packets))
    assert [read_packet(stream) for _ in range(4)] == packets + [None]


class TrickleReader(io.RawIOBase):
    """A socket-like file that returns at most one byte per read."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        chunk = self._data.read(min(1, len(buf)))
        buf[: len(chunk)] = chunk
        return len(chunk)


def test_read_packet_assembles_short_reads():
    assert read_packet(TrickleReader(example_packet())) == example_packet()


def test_read_packet_raises_on_truncation_at_every_offset():
    data = example_packet()
    for cut in range(1, len(data)):
        with pytest.raises(BitstreamError, match="truncated"):
            read_packet(io.BytesIO(data[:cut]))


def test_read_packet_rejects_a_hostile_length_before_reading_it():
    data = bytearray(example_packet()[:PREFIX_SIZE])
    data[8:12] = struct.pack("<I", MAX_PACKET_SIZE + 1)
    stream = io.BytesIO(bytes(data) + bytes(100))
    with pytest.raises(BitstreamError, match="outside"):
        read_packet(stream)
    assert stream.tell() == PREFIX_SIZE


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(width=0), "width"),
        (dict(height=65536), "height"),
        (dict(channels=2), "channels"),
        (dict(quality=256), "quality"),
        (dict(model_id=b"short"), "model_id"),
        (dict(model_id="12345678"), "model_id"),
        (dict(sequence=-1), "sequence"),
        (dict(timestamp_us=2**64), "timestamp_us"),
        (dict(kind=5), "kind"),
        (dict(width=True), "width"),
    ],
)
def test_invalid_header_fields_raise_clear_error(changes, match):
    with pytest.raises(BitstreamError, match=match):
        frame_header(**changes)


def test_pack_refuses_too_many_streams():
    with pytest.raises(BitstreamError, match=f"at most {MAX_STREAMS}"):
        pack(frame_header(), [b""] * (MAX_STREAMS + 1))


def test_pack_refuses_packets_over_the_size_limit():
    with pytest.raises(BitstreamError, match="limit"):
        pack(frame_header(), [bytes(MAX_PACKET_SIZE)])


# ---------------------------------------------------------------- the document


def test_document_header_table_matches_the_code():
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*\w+\s*\|\s*`(\w+)`", DOC.read_text(), re.M)
    offset, expected = 0, []
    for name, code in bitstream.FIELDS:
        size = struct.calcsize("<" + code)
        expected.append((offset, size, name))
        offset += size
    assert [(int(o), int(s), n) for o, s, n in rows] == expected
    assert offset == HEADER_SIZE == 44


def test_document_example_is_what_pack_writes():
    block = re.search(r"```\n(0000 .*?)```", DOC.read_text(), re.S).group(1)
    doc_bytes = bytes.fromhex("".join(line[6:] for line in block.splitlines()))
    assert doc_bytes == example_packet()


def test_document_states_the_limits_in_the_code():
    text = DOC.read_text()
    assert f"{MAX_PACKET_SIZE}" in text and f"0..{MAX_STREAMS}" in text
    assert bitstream.MAGIC.hex(" ") in text
