"""Hostile stream-mode input: a StreamDecoder fed mutated, truncated or forged key and delta frames
(CRC recomputed, so the damage reaches the decoder's parsing and the range coder) must decode to sane
latents or raise an EdgecodecError (BitstreamError for the container and references); nothing else.

Like tests/test_entropy_fuzz.py, .ci/asan.sh can run this under AddressSanitizer.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.bitstream import HEADER_SIZE, Kind
from edgecodec.codec import Codec
from edgecodec.errors import BitstreamError, EdgecodecError, MissingReferenceError
from edgecodec.temporal import StreamDecoder, StreamEncoder
from edgecodec.testscene import TestScene

pytestmark = pytest.mark.timeout(300)
W, H, Q = 96, 64, 3
OFFSETS = {"version": (4, "B"), "kind": (5, "B"), "channels": (6, "B"), "quality": (7, "B"),
           "width": (20, "H"), "height": (22, "H"), "sequence": (24, "Q"), "timestamp_us": (32, "Q"),
           "n_streams": (40, "B"), "reference": (41, "H")}


@pytest.fixture(scope="module")
def codec():
    return Codec.load(threads=1, encoder="float")


@pytest.fixture(scope="module")
def stream(codec):
    """Packets 0..11 of a moving scene (key frames at 0 and 8) and the decoder state before each."""
    scene, enc, dec = TestScene(W, H), StreamEncoder(codec), StreamDecoder(codec)
    packets, states = [], []
    for i in range(12):
        if i == 8:
            enc.request_key()
        packets.append(enc.encode(scene.render(i * 150_000), Q, 100 + i, i * 150_000))
        states.append(dec._ref)
        dec.decode_latents(packets[-1])
    assert [bitstream.unpack(p)[0].kind for p in packets].count(Kind.DELTA) == 10
    return packets, states


def with_crc(body: bytes) -> bytes:
    """``body`` (a packet without its last four bytes) with a valid CRC appended."""
    return body + struct.pack("<I", zlib.crc32(body))


def forge(packet: bytes, **fields) -> bytes:
    data = bytearray(packet[:-4])
    for name, value in fields.items():
        offset, code = OFFSETS[name]
        struct.pack_into("<" + code, data, offset, value)
    return with_crc(bytes(data))


def mutate(rng: np.random.Generator, packet: bytes) -> bytes:
    """One corruption of the packet's body (header, length table or streams), CRC made valid again."""
    b = bytearray(packet[:-4])
    op = rng.integers(6)
    if op == 0:  # bit flips anywhere after the magic
        for _ in range(int(rng.integers(1, 4))):
            b[rng.integers(4, len(b))] ^= 1 << int(rng.integers(8))
    elif op == 1:  # bit flips in the coded streams only: the header stays valid, the range coder sees them
        for _ in range(int(rng.integers(1, 6))):
            b[rng.integers(HEADER_SIZE, len(b))] ^= 1 << int(rng.integers(8))
    elif op == 2:  # overwrite a run of stream bytes
        at = int(rng.integers(HEADER_SIZE, len(b)))
        b[at:at + 8] = rng.choice([b"\xff" * 8, b"\0" * 8, rng.bytes(8)])[: len(b) - at]
    elif op == 3:  # truncate, with packet_length made consistent
        del b[rng.integers(HEADER_SIZE, len(b) + 1):]
        struct.pack_into("<I", b, 8, len(b) + 4)
    elif op == 4:  # one header field set to a random value
        name = list(OFFSETS)[rng.integers(len(OFFSETS))]
        offset, code = OFFSETS[name]
        struct.pack_into("<" + code, b, offset, int(rng.integers(0, 1 << (8 * struct.calcsize(code) - 1))))
    else:  # grow or shrink one stream, keeping the length table and packet_length consistent
        n = b[40]
        if n:
            i = int(rng.integers(n))
            lengths = list(struct.unpack_from(f"<{n}I", b, HEADER_SIZE))
            start = HEADER_SIZE + 4 * n + sum(lengths[:i])
            if rng.integers(2) and lengths[i]:
                cut = int(rng.integers(1, lengths[i] + 1))
                del b[start + lengths[i] - cut:start + lengths[i]]
                lengths[i] -= cut
            else:
                extra = rng.bytes(int(rng.integers(1, 16)))
                b[start + lengths[i]:start + lengths[i]] = extra
                lengths[i] += len(extra)
            struct.pack_into(f"<{n}I", b, HEADER_SIZE, *lengths)
            struct.pack_into("<I", b, 8, len(b) + 4)
    return with_crc(bytes(b))


def decode_or_error(codec, state, packet):
    """Decode ``packet`` with a decoder holding ``state``: the latents, or the EdgecodecError class."""
    dec = StreamDecoder(codec)
    dec._ref = state
    try:
        header, y = dec.decode_latents(packet)
    except EdgecodecError as exc:  # BitstreamError, or EntropyCodingError from the range coder
        assert str(exc)
        assert dec.waiting or dec._ref is state  # a refused packet never leaves a half-updated state
        return type(exc)
    # Whatever was accepted is a sane frame: latents in int8 range, of the header's size.
    assert y.dtype == np.int32 and y.shape[:2] == (-(-header.height // 16), -(-header.width // 16))
    assert y.min() >= -128 and y.max() <= 127
    assert dec.last_sequence == header.sequence
    return y


def test_mutated_key_and_delta_frames_decode_or_raise_edgecodec_errors(codec, stream):
    packets, states = stream
    rng = np.random.default_rng(17)
    outcomes = set()
    for _ in range(1500):
        i = int(rng.integers(len(packets)))
        got = decode_or_error(codec, states[i], mutate(rng, packets[i]))
        outcomes.add("ok" if isinstance(got, np.ndarray) else got.__name__)
    assert {"ok", "BitstreamError", "MissingReferenceError"} <= outcomes, outcomes


def test_mutated_delta_frames_decode_sane_images(codec, stream):
    """Some corruptions of a delta frame still decode; their image must be finite and the right size."""
    packets, states = stream
    rng = np.random.default_rng(23)
    decoded = 0
    for _ in range(60):
        i = int(rng.integers(1, 8))
        bad = mutate(rng, packets[i])
        dec = StreamDecoder(codec)
        dec._ref = states[i]
        try:
            image = dec.decode(bad)
        except EdgecodecError:
            continue
        decoded += 1
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
    assert decoded > 0


def test_random_bytes_and_truncations_are_refused(codec, stream):
    packets, states = stream
    rng = np.random.default_rng(5)
    for _ in range(300):
        data = rng.bytes(int(rng.integers(0, 200)))
        assert decode_or_error(codec, states[3], data) is BitstreamError
    for packet, state in zip(packets[:3], states[:3]):
        for cut in range(0, len(packet), 7):
            assert decode_or_error(codec, state, packet[:cut]) is BitstreamError


def test_forged_references_never_decode_against_the_wrong_frame(codec, stream):
    packets, states = stream
    delta, state = packets[4], states[4]  # frame 104, coded against 103, which the decoder holds
    assert isinstance(decode_or_error(codec, state, delta), np.ndarray)
    header, _ = bitstream.unpack(delta)
    for reference in (2, 3, 50, 104):  # other frames than the one held
        assert decode_or_error(codec, state, forge(delta, reference=reference)) is MissingReferenceError
    for sequence in (105, 110, 2**40):  # the same reference distance from another sequence number
        assert decode_or_error(codec, state, forge(delta, sequence=sequence)) is MissingReferenceError
    # Impossible fields: a reference past frame 0, none at all, a delta frame in version 1.
    for fields in ({"reference": 105}, {"reference": 0xFFFF}, {"reference": 0}, {"version": 1},
                   {"kind": 1, "version": 1}):
        assert decode_or_error(codec, state, forge(delta, **fields)) is BitstreamError, fields
    # A key frame that claims a reference is refused; a version-1 header cannot carry one.
    key = packets[0]
    for fields in ({"reference": 1}, {"version": 2, "reference": 1}, {"kind": 2}):
        assert decode_or_error(codec, None, forge(key, **fields)) in (BitstreamError, MissingReferenceError)


def test_forged_sizes_and_qualities_of_delta_frames_are_refused(codec, stream):
    packets, states = stream
    delta, state = packets[5], states[5]
    for fields in ({"width": W + 16}, {"height": H - 16}, {"width": 1}, {"channels": 1}, {"quality": Q - 1},
                   {"quality": 200}):
        assert decode_or_error(codec, state, forge(delta, **fields)) is BitstreamError, fields


def test_delta_frames_with_streams_of_another_frame_decode_or_raise(codec, stream):
    """A delta frame whose streams come from another delta frame: valid range-coded data against the
    wrong context and tables."""
    packets, states = stream
    rng = np.random.default_rng(11)
    parsed = [bitstream.unpack(p) for p in packets]
    for _ in range(100):
        i, j = (int(k) for k in rng.integers(1, 8, size=2))
        header, streams = parsed[i]
        other = list(parsed[j][1])
        mixed = [other[k] if rng.integers(2) else streams[k] for k in range(len(streams))]
        decode_or_error(codec, states[i], bitstream.pack(header, mixed))
    header, streams = parsed[3]
    for count in (0, 1, 2, len(streams) + 1, 16):
        forged = bitstream.pack(header, (streams * 6)[:count])
        assert decode_or_error(codec, states[3], forged) is BitstreamError
