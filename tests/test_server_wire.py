"""The wire format and the HMAC proofs that both ends of a link compute."""
from __future__ import annotations

import os
import pathlib
import re

import pytest

from edgecodec import bitstream
from edgecodec.transport import auth, wire
from tests.stream_support import frame_packet


def test_reader_splits_interleaved_frames_and_control_messages_fed_in_arbitrary_chunks():
    stream = frame_packet(1) + wire.ack(7) + frame_packet(2, size=5000) + wire.control(wire.MsgType.PING)
    for chunk in (1, 3, 13, 4096, len(stream)):
        reader = wire.Reader()
        messages = []
        for i in range(0, len(stream), chunk):
            messages += reader.feed(stream[i : i + chunk])
        assert [type(m).__name__ for m in messages] == ["Frame", "Control", "Frame", "Control"]
        assert bitstream.unpack(messages[0].packet)[0].sequence == 1
        assert bitstream.unpack(messages[2].packet)[0].sequence == 2
        assert wire.parse_u64(messages[1].payload) == 7


def test_reader_rejects_bytes_that_are_neither_frame_nor_control():
    with pytest.raises(wire.ProtocolError, match="unexpected bytes"):
        wire.Reader().feed(b"GET / HTTP/1.1\r\n")


def test_reader_rejects_a_frame_over_the_size_limit_from_its_prefix_alone():
    packet = frame_packet(1, size=10_000)
    with pytest.raises(wire.ProtocolError, match="exceeds the limit"):
        wire.Reader(max_packet=1000).feed(packet[:12])


def test_hello_round_trips_and_invalid_camera_ids_are_refused():
    hello = wire.Hello("cam-7.front_door", b"modelid8", b"streamid", os.urandom(32))
    msg = wire.Reader().feed(wire.hello(hello))[0]
    assert msg.type == wire.MsgType.HELLO and wire.parse_hello(msg.payload) == hello
    for bad in ("", "-x", "a/b", "x" * 65, "caméra"):
        with pytest.raises(Exception, match="camera id"):
            wire.check_camera_id(bad)


def test_client_proof_depends_on_secret_challenge_and_identity():
    hello = wire.Hello("cam1", b"modelid8", b"streamid", b"n" * 32)
    challenge = b"c" * 32
    proof = auth.client_proof(b"secret-one-0123456", challenge, hello)
    assert proof == auth.client_proof(b"secret-one-0123456", challenge, hello)
    assert proof != auth.client_proof(b"secret-two-0123456", challenge, hello)
    assert proof != auth.client_proof(b"secret-one-0123456", b"d" * 32, hello)
    other = wire.Hello("cam2", b"modelid8", b"streamid", b"n" * 32)
    assert proof != auth.client_proof(b"secret-one-0123456", challenge, other)
    # The server's proof is a different function of the same inputs: a reflected proof is useless.
    assert proof != auth.server_proof(b"secret-one-0123456", challenge, hello, None)


def test_tls_pins_accept_common_spellings_and_reject_garbage():
    digest = "ab" * 32
    assert auth.parse_pin(digest) == auth.parse_pin("sha256:" + ":".join(["AB"] * 32))
    with pytest.raises(Exception, match="fingerprint"):
        auth.parse_pin("sha256:1234")


def test_secrets_file_needs_a_cameras_table_with_long_enough_secrets(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[cameras]\ncam1 = "0123456789abcdef"\n')
    assert auth.load_secrets(str(path)) == {"cam1": b"0123456789abcdef"}
    path.write_text('[cameras]\ncam1 = "short"\n')
    with pytest.raises(Exception, match="at least 16"):
        auth.load_secrets(str(path))
    path.write_text('cam1 = "0123456789abcdef"\n')
    with pytest.raises(Exception, match=r"\[cameras\]"):
        auth.load_secrets(str(path))


def test_protocol_document_lists_every_message_type_and_error_code():
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    for kind in wire.MsgType:
        assert f"| {kind.value} | {kind.name} |" in text, kind
    codes_line = next(line for line in text.splitlines() if line.startswith("ERROR codes:"))
    listed = re.findall(r"(\d+) [a-z]", codes_line.replace("\n", " ") + " " +
                        text.split(codes_line, 1)[1].split("\n\n", 1)[0])
    assert sorted(map(int, listed)) == sorted(code.value for code in wire.ErrorCode)
    assert f"version u8 (= {wire.PROTOCOL_VERSION})" in text
