"""Stream mode end to end: the edge pipeline with the real codec sends key frames and delta frames over
TCP and MQTT; the server stores them, and its probe and live view decode them, also when they join
mid-stream or miss frames; after a server outage every stored frame still decodes."""
from __future__ import annotations

import argparse
import json
import signal
import time

import pytest

from edgecodec import bitstream
from edgecodec.bitstream import Kind
from edgecodec.codec import Codec
from edgecodec.edge import config as cfg
from edgecodec.edge.pipeline import EdgePipeline
from edgecodec.server.follow import StreamFollower
from edgecodec.server.probe import DecodeProbe
from edgecodec.temporal import StreamDecoder
from edgecodec.web.feeds import LiveDecoder
from tests.stream_support import (SECRET, Mosquitto, ServerThread, free_port, mosquitto_path,
                                  start_edge_process, start_server_process, stop_process, wait_until)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def codec():
    return Codec.load(None, threads=1)


def edge_config(tmp_path, url, *flags):
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    args = parser.parse_args(["--camera-id", "cam1", "--server", url, "--secret", SECRET,
                              "--spool-dir", str(tmp_path / "edge"), "--width", "96", "--height", "64",
                              "--fps", "10", "--quality", "1", "--key-interval", "1", *map(str, flags)])
    return cfg.load(None, args)


def stream_through(tmp_path, codec, server, url, frames=25):
    packets = []
    server.hub.subscribe(lambda cid, header, packet: packets.append((header, packet)))
    pipe = EdgePipeline(edge_config(tmp_path, url), codec=codec)
    pipe.start()
    try:
        wait_until(lambda: len(packets) >= frames, 90, what=f"{frames} frames")
    finally:
        pipe.stop()
    return packets, pipe.figures()


def assert_key_frames_then_deltas_that_decode(codec, packets):
    kinds = [h.kind for h, _ in packets]
    assert kinds[0] == Kind.FRAME and Kind.DELTA in kinds
    assert kinds.count(Kind.FRAME) >= 2  # one a second at 10 frames/s: the interval holds
    decoder = StreamDecoder(codec)
    for header, packet in packets:
        image = decoder.decode(packet)  # in order, each on the one before: nothing missing
        assert image.shape == (64, 96, 3)


def test_stream_mode_over_tcp_sends_key_frames_then_delta_frames_that_decode_in_order(tmp_path, codec):
    with ServerThread(tmp_path) as server:
        packets, figures = stream_through(tmp_path, codec, server, server.url)
        ingest = server.ingest.summary()["cam1"]
    assert_key_frames_then_deltas_that_decode(codec, packets)
    assert figures["delta_frames"] > figures["key_frames"] >= 2
    assert ingest["delta_frames"] > 0 and ingest["rejected"] == 0


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed (apt-get install -y mosquitto)")
def test_stream_mode_over_mqtt_sends_key_frames_then_delta_frames_that_decode_in_order(tmp_path, codec):
    broker = Mosquitto(tmp_path)
    try:
        with ServerThread(tmp_path, mqtt=broker.url) as server:
            packets, _ = stream_through(tmp_path, codec, server, broker.url)
    finally:
        broker.close()
    assert_key_frames_then_deltas_that_decode(codec, packets)


def test_intra_mode_sends_only_key_frames(tmp_path, codec):
    with ServerThread(tmp_path) as server:
        packets = []
        server.hub.subscribe(lambda cid, header, packet: packets.append(header.kind))
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--intra"), codec=codec)
        pipe.start()
        wait_until(lambda: len(packets) >= 8, 60, what="8 frames")
        pipe.stop()
    assert set(packets) == {Kind.FRAME}


def test_probe_and_live_view_joining_mid_stream_start_at_the_last_key_frame(tmp_path, codec):
    with ServerThread(tmp_path) as server:
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--key-interval", 30), codec=codec)
        pipe.start()
        try:
            wait_until(lambda: server.hub.latest("cam1") is not None
                       and server.hub.latest("cam1")[0].kind == Kind.DELTA, 60, what="a delta frame")
            probe = DecodeProbe(server.hub, lambda: codec)
            probe.start()
            live = LiveDecoder(server.hub, lambda: codec).start()
            live.watch("cam1")
            wait_until(lambda: live.picture("cam1") is not None, 30, what="a picture in the live view")
            seen = len(server.received)
            wait_until(lambda: len(server.received) >= seen + 5, 30, what="5 more frames")
            wait_until(lambda: probe.summary().get("cam1", {}).get("decoded", 0) >= 3, 30, what="probe decodes")
            wait_until(lambda: live.picture("cam1").sequence >= server.received[seen][1], 30,
                       what="the live view following the stream")
            summary = probe.summary()["cam1"]
            live.close()
            probe.close()
        finally:
            pipe.stop()
    # No key frame came after they joined (30 s interval): they began at the hub's last key frame.
    assert summary["decode_errors"] == 0 and summary["waiting_for_key_frame"] == 0
    assert live.failed["cam1"] == 0 and live.waiting["cam1"] == 0


def test_a_viewer_that_missed_a_frame_waits_for_the_next_key_frame_and_counts(codec, caplog):
    from edgecodec.temporal import StreamEncoder
    from edgecodec.testscene import TestScene

    scene = TestScene(96, 64)
    encoder = StreamEncoder(codec, key_interval_s=0.5)
    frames = []
    for i in range(10):  # key frames at 0 and 0.5 s (frame 5)
        packet = encoder.encode(scene.render(i * 100_000), 1, sequence=i, timestamp_us=i * 100_000)
        frames.append((bitstream.unpack(packet)[0], packet))
    assert [h.kind for h, _ in frames].count(Kind.FRAME) == 2 and frames[5][0].kind == Kind.FRAME
    follower = StreamFollower(codec, "cam1", who="test")
    assert follower.advance(frames[:2])[0].sequence == 1
    assert follower.advance(frames[3:4]) is None  # frame 2 went missing: 3 cannot be decoded
    assert follower.advance(frames[4:5]) is None and follower.waiting and follower.waits == 1
    assert follower.waiting_frames == 2
    header, y = follower.advance(frames[5:7])  # the key frame: decoding again
    assert header.sequence == 6 and not follower.waiting
    assert codec.synthesize(header, y).shape == (64, 96, 3)
    assert sum("waiting for a key frame" in r.message for r in caplog.records) <= 1  # said once


def test_a_server_outage_in_stream_mode_loses_nothing_and_every_stored_frame_decodes(tmp_path, codec):
    from edgecodec.recording.reader import RecordingReader

    port = free_port()
    server = start_server_process(tmp_path, port, "--record", tmp_path / "rec")
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}", "--key-interval", 1)
    try:
        wait_until(lambda: len(recorded(tmp_path)) >= 10, 60, what="streaming to start")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        time.sleep(3)  # frames, key and delta, wait in the edge's spool
        server = start_server_process(tmp_path, port, "--record", tmp_path / "rec", name="server2")
        before = len(recorded(tmp_path))
        wait_until(lambda: len(recorded(tmp_path)) >= before + 35, 90, what="catch-up after restart")
        assert stop_process(edge) == 0
    finally:
        stop_process(edge)
        stop_process(server)
    decoder, seqs, kinds = StreamDecoder(codec), [], []
    for path in sorted((tmp_path / "rec").rglob("*.ecr")):
        with RecordingReader(path) as reader:
            for frame in reader.scan().frames:
                if seqs and frame.sequence <= seqs[-1]:
                    continue  # stored again after the kill (not yet in the watermark): a duplicate
                decoder.decode(reader.read(frame))  # raises if any frame's reference is missing
                seqs.append(frame.sequence)
                kinds.append(frame.key)
    assert seqs == sorted(seqs) and kinds[0] and not all(kinds)
    figures = json.loads((tmp_path / "edge.json").read_text())
    assert len(seqs) == figures["encoded"] and figures["spool_frames"] == 0


def recorded(folder) -> list:
    from tests.stream_support import logged_sequences

    return logged_sequences(folder)
