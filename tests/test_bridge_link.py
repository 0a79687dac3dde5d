"""The threaded Link against a simulated device over paced in-process channels and pyserial URLs."""
from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from firmware_bridge import FrameRejected, Link, LinkHandler, MsgType, SetQuality, Telemetry
from firmware_bridge.channel import FaultModel, SocketPort
from firmware_bridge.simulator import DeviceSimulator
from tests.bridge.helpers import Recorder, noisy, paced_link

pytestmark = pytest.mark.timeout(60)  # no test may hang (needs pytest-timeout)


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_trigger_quality_and_telemetry_reach_the_host_handler():
    events = Recorder()
    got = events.got
    with paced_link(host_options=dict(handler=events)) as (host, device, _):
        assert device.trigger(source=1, channel=2)
        assert device.link.send(SetQuality(2, 48000))
        assert device.send_telemetry()
        assert events.wait(lambda: got["trigger"] and got["quality"] and got["telemetry"])
    assert (got["trigger"][0].source_name, got["trigger"][0].channel) == ("pir", 2)
    assert got["quality"][0] == SetQuality(2, 48000)
    assert got["telemetry"][0].battery_mv == 3900 and "uptime_s" in got["telemetry"][0].values


def test_requests_are_answered_with_the_asked_message():
    with paced_link() as (host, device, _):
        telemetry = host.request(MsgType.TELEMETRY, timeout=3)
        status = host.request(MsgType.STATUS, timeout=3)
        hello = host.request(MsgType.HELLO, timeout=3)
    assert isinstance(telemetry, Telemetry) and status.values["simulated"] == "yes"
    assert hello.name == "test-device" and hello.max_payload == 260


def test_reliable_messages_are_acted_on_once_even_when_acks_are_lost():
    events = Recorder()
    triggers = events.got["trigger"]
    # Host -> device (the ACKs) corrupts 3 % of bytes: about a third of the ACKs are lost.
    with paced_link(ab=FaultModel(corrupt=0.03, seed=1), ba=FaultModel(seed=2),
                    host_options=dict(handler=events)) as (host, device, _):
        acked = sum(device.trigger(channel=i, timeout=3) for i in range(15))  # the channel numbers them
        assert events.wait(lambda: len(triggers) >= acked)
        time.sleep(0.2)
    stamps = [t.channel for t in triggers]
    assert acked >= 10 and len(stamps) == len(set(stamps)), "a retransmitted trigger was delivered twice"
    assert host.stats["duplicates"] > 0


def test_corrupted_bytes_frame_arrives_bitexact_or_fails_after_retries():
    rng = random.Random(5)
    frames = [rng.randbytes(rng.randrange(1500, 3500)) for _ in range(4)]
    with paced_link(460800, noisy(0.01, 11), noisy(0.01, 12)) as (host, device, _):
        results = [host.send_frame(f, timeout=20) for f in frames]
        time.sleep(0.1)
        stats = host.stats
    delivered = device.frames
    assert sum(results) >= 3  # at 1 % corruption the retry limit is rarely reached
    assert [f for f, ok in zip(frames, results) if ok] == [f for f in delivered if f in frames]
    assert all(f in frames for f in delivered), "a frame arrived altered"
    assert stats["rx_crc_errors"] + stats["rx_cobs_errors"] > 0 and stats["chunks_resent"] > 0


def test_link_drop_mid_transfer_resumes_without_starting_over():
    data = random.Random(6).randbytes(20000)
    cut_ab, cut_ba = FaultModel(), FaultModel()
    at_cut: dict = {}
    with paced_link(115200, cut_ab, cut_ba) as (host, device, _):
        def replug():
            # Plugged back in once the sender has noticed the silence (two polls timed out).
            wait_for(lambda: host.stats["timeouts"] >= at_cut["timeouts"] + 2, 20)
            at_cut["timeouts_seen"] = host.stats["timeouts"] - at_cut["timeouts"]
            cut_ab.cut = cut_ba.cut = False

        def unplug_at_a_quarter(done, total):  # on the sending thread: the cut is surely mid-transfer
            if not at_cut and done >= total // 4:
                cut_ab.cut = cut_ba.cut = True
                at_cut.update(acked=done, timeouts=host.stats["timeouts"])
                threading.Thread(target=replug, daemon=True).start()

        assert host.send_frame(data, timeout=30, progress=unplug_at_a_quarter)
        assert wait_for(lambda: device.frame_count == 1)
        stats = host.stats
    assert device.frames == [data]
    assert at_cut["acked"] < len(data) and at_cut["timeouts_seen"] >= 2  # the cable really was out a while
    chunks = -(-len(data) // 256)
    assert stats["chunks_sent"] < 1.5 * chunks, "the transfer restarted instead of resuming"


def test_silent_peer_fails_after_the_retry_limit_without_hanging():
    cut_ab, cut_ba = FaultModel(), FaultModel()
    with paced_link(115200, cut_ab, cut_ba, host_options=dict(retries=3, link_timeout=0.5)) as (host, device, _):
        cut_ab.cut = cut_ba.cut = True
        t0 = time.monotonic()
        assert host.send_frame(b"z" * 3000, timeout=30) is False
        assert time.monotonic() - t0 < 5
        assert host.stats["transfers_failed"] == 1


def test_failed_frame_resumes_where_the_receiver_stopped_on_the_next_call():
    data = random.Random(8).randbytes(12000)
    cut_ab, cut_ba = FaultModel(), FaultModel()
    with paced_link(115200, cut_ab, cut_ba, host_options=dict(retries=2, link_timeout=0.3)) as (host, device, _):
        threading.Timer(0.5, lambda: setattr(cut_ab, "cut", True)).start()
        assert host.send_frame(data, timeout=3) is False
        sent_first = host.stats["chunks_sent"]
        cut_ab.cut = False
        assert host.send_frame(data, timeout=10)
        sent_second = host.stats["chunks_sent"] - sent_first
        assert wait_for(lambda: device.frame_count == 1)
    assert device.frames == [data]
    assert sent_second < -(-len(data) // 256) * 0.8


def test_dropping_a_failed_frame_frees_the_receiver():
    cut = FaultModel()
    with paced_link(115200, cut, None, host_options=dict(retries=1, link_timeout=0.2)) as (host, device, _):
        threading.Timer(0.2, lambda: setattr(cut, "cut", True)).start()
        assert host.send_frame(bytes(8000), timeout=2) is False
        assert device.receiver.busy
        cut.cut = False
        host.drop_pending()
        assert wait_for(lambda: not device.receiver.busy)


def test_frame_too_large_for_the_peer_is_rejected_at_once():
    with paced_link() as (host, device, _):
        with pytest.raises(FrameRejected):
            host.send_frame(bytes(70000), timeout=5)
        with pytest.raises(ValueError):
            host.send_frame(b"", timeout=5)


def test_loop_url_link_receives_its_own_frames():
    events = Recorder()
    with Link("loop://", handler=events) as link:
        assert link.wait_peer(2).role == 0
        assert link.send_frame(b"self" * 1000, timeout=5)
        assert events.wait(lambda: events.got["frame"] == [b"self" * 1000])


def test_socket_url_reconnects_after_the_server_drops_the_connection():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    device = DeviceSimulator("tcp-device")
    conns = []

    def serve(n):
        for _ in range(n):
            conn, _ = server.accept()
            conns.append(conn)
            device.attach(SocketPort(conn))

    t = threading.Thread(target=serve, args=(2,), daemon=True)
    t.start()
    try:
        with Link(f"socket://127.0.0.1:{port}") as host:
            host.wait_peer(5)
            assert host.send_frame(b"a" * 5000, timeout=10)
            device.detach()
            conns[0].close()  # the server goes away; the link reopens the URL by itself
            assert wait_for(lambda: host.stats["reconnects"] >= 1 and device.link is not None, 10)
            assert host.send_frame(b"b" * 5000, timeout=10)
            assert wait_for(lambda: device.frame_count == 2)
    finally:
        device.close()
        server.close()
    assert device.frames == [b"a" * 5000, b"b" * 5000]


def test_event_queue_stays_bounded_when_a_callback_blocks():
    release = threading.Event()
    seen = []

    class Slow(LinkHandler):
        def on_telemetry(self, msg):
            seen.append(msg)
            release.wait(5)

    with paced_link(None, host_options=dict(handler=Slow())) as (host, device, _):
        for _ in range(100):
            device.link.send(device.telemetry(), reliable=False)
        assert wait_for(lambda: host.stats["events_dropped"] > 0)
        assert host.events_waiting <= 64
        release.set()


def test_garbage_flood_keeps_memory_bounded_and_the_link_usable():
    with paced_link(None) as (host, device, pair):
        for _ in range(50):  # 1 MB with no delimiter, then random bytes with some
            pair.b.write(b"\x7f" * 20000)
        pair.b.write(bytes(random.Random(9).randrange(256) for _ in range(20000)))
        assert wait_for(lambda: host.stats["rx_too_long"] >= 1)
        assert len(host._decoder._buf) <= host._decoder.max_encoded
        assert host.request(MsgType.STATUS, timeout=5).values["simulated"] == "yes"
        assert host.send_frame(b"after the flood" * 100, timeout=10)
