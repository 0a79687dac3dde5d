"""The TCP/TLS server against real sockets: authentication, acknowledgements, duplicates and limits."""
from __future__ import annotations

import logging
import socket
import subprocess
import time

import pytest

from edgecodec.server.ingest import ServerLimits
from edgecodec.transport import AuthRefused, LinkError, auth, open_link, wire
from tests.stream_support import (SECRET, ServerThread, frame_packet, link_config, wait_until)

pytestmark = pytest.mark.timeout(60)


def connected_link(url, **kw):
    link = open_link(link_config(url, **kw))
    link.connect()
    return link


def wait_ack(link, sequence, timeout=5.0):
    def acked():
        last = link.poll(0.05)
        return last is not None and last >= sequence

    return wait_until(acked, timeout, what=f"ack of {sequence}")


def raw_session(port: int, camera_id="cam1", secret=SECRET) -> socket.socket:
    """A hand-driven client that completes the handshake, for sending arbitrary bytes afterwards."""
    link = open_link(link_config(f"tcp://127.0.0.1:{port}", camera_id=camera_id, secret=secret))
    link.connect()
    return link._sock


def server_closes(sock: socket.socket, timeout=5.0) -> bytes:
    """Read until the server closes the connection; return what it sent."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_authenticated_camera_frames_reach_the_hub_and_are_acknowledged(tmp_path):
    with ServerThread(tmp_path) as server:
        link = connected_link(server.url)
        for seq in range(5):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 4)
        link.close()
        assert server.received == [("cam1", s) for s in range(5)]
        wait_until(lambda: not server.hub.cameras()[0].connected, 5, what="disconnect")


def test_wrong_secret_is_refused_and_logged(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "edgecodec")
    with ServerThread(tmp_path) as server:
        link = open_link(link_config(server.url, secret="not-the-right-secret-at-all"))
        # A refusal the edge can tell from an outage: it gives up on it after a few attempts.
        with pytest.raises(AuthRefused, match="refused camera 'cam1': wrong secret or unknown camera id"):
            link.connect()
        assert server.ingest.counters["cam1"].auth_failures == 1
    assert "refused camera 'cam1'" in caplog.text and "wrong secret" in caplog.text


def test_unknown_camera_is_refused_like_a_wrong_secret(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "edgecodec")
    with ServerThread(tmp_path) as server:
        with pytest.raises(AuthRefused, match="refused camera 'intruder': wrong secret or unknown camera id"):
            open_link(link_config(server.url, camera_id="intruder")).connect()
    assert "unknown camera" in caplog.text


def test_a_server_that_is_down_is_an_outage_not_a_refusal(tmp_path):
    from tests.stream_support import free_port

    with pytest.raises(LinkError) as caught:
        open_link(link_config(f"tcp://127.0.0.1:{free_port()}")).connect()
    assert not isinstance(caught.value, AuthRefused) and "cannot connect" in str(caught.value)


def test_edge_refuses_a_server_that_does_not_know_its_secret(tmp_path):
    with ServerThread(tmp_path, cameras={"cam1": "the-server-has-another-secret"}) as server:
        # The server refuses the proof first; an impostor that skipped the check would still fail
        # the edge's check of WELCOME, which the handshake test below exercises directly.
        with pytest.raises(LinkError):
            open_link(link_config(server.url)).connect()
    hello = wire.Hello("cam1", b"testmdl1", b"stream01", b"n" * 32)
    forged = auth.server_proof(b"the-server-has-another-secret", b"c" * 32, hello, 5)
    assert not auth.verify(auth.server_proof(SECRET.encode(), b"c" * 32, hello, 5), forged)


def test_resent_frames_are_stored_once_but_still_acknowledged(tmp_path):
    with ServerThread(tmp_path) as server:
        link = connected_link(server.url)
        for seq in (0, 1, 2):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 2)
        link.close()
        link = connected_link(server.url)  # same stream: a reconnect that resends
        for seq in (1, 2, 3):
            link.send_frame(seq, frame_packet(seq))
        wait_ack(link, 3)
        link.close()
        assert [s for _, s in server.received] == [0, 1, 2, 3]
        assert server.ingest.counters["cam1"].duplicates == 2


def test_reconnecting_edge_learns_what_the_server_already_stored(tmp_path):
    with ServerThread(tmp_path) as server:
        link = connected_link(server.url)
        link.send_frame(41, frame_packet(41))
        wait_ack(link, 41)
        link.close()
        assert open_link(link_config(server.url)).connect() == 41
        assert open_link(link_config(server.url, stream_id=b"newstrm1")).connect() is None


def test_stored_sequences_survive_a_server_restart_with_a_state_dir(tmp_path):
    state = tmp_path / "state"
    with ServerThread(tmp_path, state_dir=str(state)) as server:
        link = connected_link(server.url)
        link.send_frame(9, frame_packet(9))
        wait_ack(link, 9)
        link.close()
    with ServerThread(tmp_path, state_dir=str(state)) as server:
        link = open_link(link_config(server.url))
        assert link.connect() == 9
        link.send_frame(9, frame_packet(9))
        link.send_frame(10, frame_packet(10))
        wait_ack(link, 10)
        assert [s for _, s in server.received] == [10]


def test_oversized_packet_closes_only_that_connection(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "edgecodec")
    with ServerThread(tmp_path, limits=ServerLimits(max_packet=4096)) as server:
        good = connected_link(server.url, camera_id="cam2")
        bad = raw_session(server.port)
        bad.sendall(frame_packet(0, size=100_000))
        reply = server_closes(bad)
        assert b"exceeds the limit" in reply
        for seq in range(3):
            good.send_frame(seq, frame_packet(seq))
        wait_ack(good, 2)
        assert [s for cid, s in server.received if cid == "cam2"] == [0, 1, 2]
        assert not [s for cid, s in server.received if cid == "cam1"]
        assert server.ingest.counters["cam1"].rejected == 1


@pytest.mark.parametrize("garbage", [b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", b"\x89ECC\x07" + b"\xff" * 40])
def test_garbage_after_the_handshake_closes_only_that_connection(tmp_path, garbage):
    with ServerThread(tmp_path) as server:
        good = connected_link(server.url, camera_id="cam2")
        bad = raw_session(server.port)
        bad.sendall(garbage)
        assert wire.MsgType.ERROR in [m.type for m in wire.Reader().feed(server_closes(bad))]
        good.send_frame(0, frame_packet(0))
        wait_ack(good, 0)
        assert server.received == [("cam2", 0)]


def test_corrupt_packet_with_a_valid_length_is_rejected(tmp_path):
    with ServerThread(tmp_path) as server:
        bad = raw_session(server.port)
        packet = bytearray(frame_packet(0))
        packet[60] ^= 0xFF  # payload byte: the CRC no longer matches
        bad.sendall(bytes(packet))
        assert b"CRC" in server_closes(bad)
        assert server.received == []


def test_garbage_instead_of_a_hello_is_refused(tmp_path):
    with ServerThread(tmp_path) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"\x16\x03\x01" + b"\x00" * 200)  # a TLS ClientHello on a plain port, say
        assert b"expected a control message" in server_closes(sock)


def test_connections_beyond_the_limit_are_refused(tmp_path):
    with ServerThread(tmp_path, limits=ServerLimits(max_connections=2)) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", server.port))
        assert b"too many connections" in server_closes(extra)
        for s in held:
            s.close()


def test_a_client_that_never_completes_the_handshake_is_dropped(tmp_path):
    with ServerThread(tmp_path, limits=ServerLimits(handshake_timeout=0.5)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        start = time.monotonic()
        server_closes(sock)
        assert time.monotonic() - start < 3


def test_an_idle_camera_is_disconnected(tmp_path):
    with ServerThread(tmp_path, limits=ServerLimits(idle_timeout=0.5)) as server:
        link = connected_link(server.url)
        with pytest.raises(LinkError, match="timed out"):
            wait_until(lambda: link.poll(0.1) == "never", 5)


def test_a_new_connection_replaces_the_old_one_of_the_same_camera(tmp_path):
    with ServerThread(tmp_path) as server:
        old = connected_link(server.url)
        new = connected_link(server.url)
        with pytest.raises(LinkError, match="replaced"):
            wait_until(lambda: old.poll(0.1) == "never", 5)
        new.send_frame(0, frame_packet(0))
        wait_ack(new, 0)
        assert server.hub.cameras()[0].connected


def test_frames_of_another_model_than_announced_are_rejected(tmp_path):
    with ServerThread(tmp_path) as server:
        link = connected_link(server.url)
        link.send_frame(0, frame_packet(0, model_id=b"othermdl"))
        with pytest.raises(LinkError, match="model"):
            wait_until(lambda: link.poll(0.1) == "never", 5)


def test_edge_drop_reports_reach_the_hub(tmp_path):
    with ServerThread(tmp_path) as server:
        link = connected_link(server.url)
        link.send_dropped(5)
        link.send_frame(0, frame_packet(0))
        wait_ack(link, 0)
        assert server.hub.cameras()[0].dropped == 5


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=edgecodec-test"],
                   check=True, capture_output=True)
    return str(cert), str(key)


def test_tls_link_works_with_the_pinned_certificate(tmp_path, certificate):
    cert, key = certificate
    with ServerThread(tmp_path, tls_cert=cert, tls_key=key) as server:
        url = f"tls://127.0.0.1:{server.port}"
        link = connected_link(url, tls_pin=auth.certificate_pin(cert))
        link.send_frame(0, frame_packet(0))
        wait_ack(link, 0)
        assert server.received == [("cam1", 0)]


def test_tls_link_refuses_a_server_whose_certificate_does_not_match_the_pin(tmp_path, certificate):
    cert, key = certificate
    with ServerThread(tmp_path, tls_cert=cert, tls_key=key) as server:
        url = f"tls://127.0.0.1:{server.port}"
        with pytest.raises(AuthRefused, match="does not match the pinned"):
            open_link(link_config(url, tls_pin="sha256:" + "00" * 32)).connect()
        assert server.received == []
