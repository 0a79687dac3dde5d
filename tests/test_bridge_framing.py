"""Framing, messages and the shared test vectors of firmware_bridge (no threads, no ports)."""
from __future__ import annotations

import random

import pytest

from firmware_bridge import framing, messages, vectors
from firmware_bridge.channel import FaultModel
from firmware_bridge.framing import FrameDecoder, cobs_decode, cobs_encode, crc32, decode_frame, encode_frame
from firmware_bridge.messages import MsgType, unpack_message

pytestmark = pytest.mark.timeout(60)  # no test may hang (needs pytest-timeout)


def test_crc32_matches_the_standard_check_value():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"6789", crc32(b"12345")) == 0xCBF43926


@pytest.mark.parametrize("n", [0, 1, 2, 253, 254, 255, 507, 508, 509, 1100])
def test_cobs_round_trips_every_length_around_block_boundaries(n):
    rng = random.Random(n)
    for data in (bytes(n), b"\x01" * n, bytes(rng.randrange(256) for _ in range(n))):
        enc = cobs_encode(data)
        assert 0 not in enc
        assert len(enc) <= n + n // 254 + 1
        assert cobs_decode(enc) == data


def test_cobs_decoder_rejects_codes_running_past_the_end_and_zero_bytes():
    for bad in (b"", b"\x05\x01\x02", b"\x03\x00\x01", b"\x00"):
        with pytest.raises(ValueError):
            cobs_decode(bad)


def test_frame_round_trips_with_zero_only_as_delimiter():
    payload = bytes(range(256)) * 4
    wire = encode_frame(MsgType.STATUS, payload, flags=framing.FLAG_REPLY, seq=200)
    assert wire.count(0) == 1 and wire.endswith(b"\x00")
    assert len(wire) <= framing.max_wire_size(len(payload))
    frame = decode_frame(wire[:-1])
    assert (frame.type, frame.flags, frame.seq, frame.payload) == (MsgType.STATUS, 1, 200, payload)
    with pytest.raises(ValueError):
        encode_frame(MsgType.STATUS, bytes(framing.MAX_PAYLOAD + 1))


def test_decoder_resynchronises_after_garbage_and_split_frames():
    rng = random.Random(7)
    sent, stream = [], bytearray()
    for i in range(200):
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
        stream += b"\x00" + encode_frame(MsgType.TELEMETRY, payload, seq=i)
        sent.append((i, payload))
    dec, got, pos = FrameDecoder(256), [], 0
    while pos < len(stream):  # arbitrary read sizes, as a UART driver delivers them
        step = rng.randrange(1, 64)
        got += [(f.seq, f.payload) for f in dec.feed(bytes(stream[pos:pos + step]))]
        pos += step
    assert got == sent


def test_decoder_memory_stays_bounded_without_delimiters():
    dec = FrameDecoder(64)
    for _ in range(200):
        assert dec.feed(b"\x55" * 5000) == []
    assert len(dec._buf) <= dec.max_encoded
    assert dec.feed(b"\x00" + encode_frame(MsgType.HEARTBEAT, b"\x01\x02\x03\x04"))[0].type == MsgType.HEARTBEAT
    assert dec.stats["too_long"] == 1


def test_corrupted_stream_never_yields_a_frame_that_was_not_sent():
    rng = random.Random(11)
    faults = FaultModel(corrupt=0.01, insert=0.0025, drop=0.0025, seed=3)
    sent = set()
    dec, got = FrameDecoder(300), []
    for i in range(3000):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        sent.add((i % 256, payload))
        got += dec.feed(faults.apply(encode_frame(MsgType.STATUS, payload, seq=i)))
    assert got and all((f.seq, f.payload) in sent for f in got)
    assert dec.stats["crc_errors"] + dec.stats["cobs_errors"] > 100  # the faults did hit


@pytest.mark.parametrize("msg,fixed", [
    (messages.Hello(1, 260, 65536, 16, 4242, "mcu"), 10), (messages.Heartbeat(99), 4), (messages.Ack(3, 1), 2),
    (messages.Trigger(1, 2, 3), 6), (messages.SetQuality(4, 64000), 5), (messages.Request(MsgType.STATUS), 1),
    (messages.Telemetry(3600, 55, -3.5, {"rssi": "-71", "door": "closed"}), 5), (messages.FrameBegin(1, 2, 3, 4), 12),
    (messages.FrameChunk(5, 6, b"abc"), 4), (messages.FrameStatus(7, 0, 9, 10, 11), 10),
    (messages.FrameAbort(12, 1), 3)])
def test_every_message_round_trips_and_rejects_a_short_payload(msg, fixed):
    payload = msg.pack()
    assert unpack_message(msg.TYPE, payload) == msg
    if msg.TYPE not in (MsgType.HELLO, MsgType.TELEMETRY, MsgType.FRAME_CHUNK):  # these read to the end
        assert unpack_message(msg.TYPE, payload + b"future") == msg  # later additions are ignored
    with pytest.raises(ValueError):
        unpack_message(msg.TYPE, payload[:fixed - 1])


def test_status_carries_key_values_and_unknown_types_are_rejected():
    assert unpack_message(MsgType.STATUS, messages.Status({"a": "1"}).pack()).values == {"a": "1"}
    with pytest.raises(ValueError):
        unpack_message(0x7E, b"")


def test_truncated_key_value_list_is_malformed():
    with pytest.raises(ValueError):
        messages.unpack_kv(b"\x03key\x05ab")
    with pytest.raises(ValueError):
        messages.pack_kv({"k" * 256: "v"})


def test_committed_test_vectors_match_the_generator():
    assert vectors.DEFAULT_PATH.read_text() == vectors.generate(), \
        "run `python -m firmware_bridge.vectors` and commit the result (a protocol change is a version change)"


def test_python_decoder_agrees_with_every_shared_vector():
    """The Python side of the C test: decode each vector's wire bytes and compare."""
    for line in vectors.DEFAULT_PATH.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, *f = line.split(" ")
        unhex = lambda s: b"" if s == "-" else bytes.fromhex(s)  # noqa: E731
        if kind == "crc32":
            assert crc32(unhex(f[0])) == int(f[1], 16)
        elif kind == "cobs":
            assert cobs_decode(unhex(f[1])) == unhex(f[0]) and cobs_encode(unhex(f[0])) == unhex(f[1])
        elif kind == "frame":
            frame = FrameDecoder(260).feed(unhex(f[4]))[0]
            assert (frame.type, frame.flags, frame.seq, frame.payload) == (int(f[0]), int(f[1]), int(f[2]),
                                                                            unhex(f[3]))
        elif kind == "bad":
            assert FrameDecoder(260).feed(unhex(f[0])) == []
        elif kind == "stream":
            got = [fr.seq for fr in FrameDecoder(int(f[0])).feed(unhex(f[1]))]
            assert len(got) == int(f[2]) and ",".join(map(str, got)) == f[3]
        elif kind == "msg":
            cls = getattr(messages, "".join(w.title() for w in f[0].split("_")))
            assert cls.unpack(unhex(f[1])).pack() == unhex(f[1])
