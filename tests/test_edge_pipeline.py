"""The edge pipeline in one process with a stand-in codec: order, timestamps, drops at the source, health."""
from __future__ import annotations

import argparse
import threading
import time

import pytest

from edgecodec.edge import config as cfg
from edgecodec.edge import pipeline as pipeline_module
from edgecodec.edge.pipeline import EdgePipeline
from edgecodec.edge.sources import Source
from tests.stream_support import SECRET, FakeCodec, ServerThread, wait_until

pytestmark = pytest.mark.timeout(60)


def edge_config(tmp_path, url, *flags):
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    args = parser.parse_args(["--camera-id", "cam1", "--server", url, "--secret", SECRET,
                              "--spool-dir", str(tmp_path / "edge"), "--width", "64", "--height", "48",
                              *map(str, flags)])
    return cfg.load(None, args)


def test_frames_arrive_in_sequence_order_stamped_at_capture(tmp_path):
    with ServerThread(tmp_path) as server:
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--fps", 20), codec=FakeCodec())
        before = time.time_ns() // 1000
        pipe.start()
        wait_until(lambda: len(server.received) >= 15, 20, what="15 frames")
        pipe.stop()
        after = time.time_ns() // 1000
        figures = pipe.figures()
        headers = [server.hub.latest("cam1")[0]]
    seqs = [s for _, s in server.received]
    assert seqs == list(range(len(seqs))) and figures["dropped_at_source"] == 0
    assert before <= headers[0].timestamp_us <= after
    assert figures["sent"] == figures["acked"] == figures["encoded"] == len(seqs)


def test_an_encoder_slower_than_the_camera_drops_frames_at_the_source_and_counts_them(tmp_path):
    with ServerThread(tmp_path) as server:
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--fps", 40), codec=FakeCodec(delay=0.1))
        pipe.start()
        # The camera runs at 40 frames/s and the encoder takes 100 ms a frame: wait until ten frames
        # got through and the camera lost more than it delivered (margin for the one in the slot).
        wait_until(lambda: (lambda f: f["encoded"] >= 10 and f["dropped_at_source"] >= f["encoded"] + 2)(
            pipe.figures()), 30, what="10 frames encoded and more dropped at the source")
        pipe.stop()
        f = pipe.figures()
        wait_until(lambda: server.hub.cameras()[0].dropped == f["dropped_at_source"], 5,
                   what="drop report at the server")
    assert f["encoded"] <= f["elapsed_s"] / 0.1 + 1  # no faster than a 100 ms encoder can go
    assert f["dropped_at_source"] >= f["captured"] // 2
    assert f["captured"] == f["encoded"] + f["dropped_at_source"]  # every frame accounted for
    seqs = [s for _, s in server.received]
    assert seqs == sorted(seqs) and seqs[-1] == f["captured"] - 1  # newest frame wins


def test_rate_control_keeps_the_stream_under_its_target(tmp_path):
    with ServerThread(tmp_path) as server:
        # FakeCodec frames are 300 B * 1.2**q: q0 at 20 frames/s is 48 kbit/s, q7 about 172 kbit/s.
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--fps", 20, "--target-kbps", 100),
                            codec=FakeCodec())
        pipe.start()
        wait_until(lambda: pipe.figures()["encoded"] >= 60, 30, what="60 frames (3 s at 20 frames/s)")
        pipe.stop()
        f = pipe.figures()
    assert f["kbps"] <= 105  # under the target (the bucket starts empty; 5 % for the last frame's guess)
    # ... yet most of it is used: at least 60 % of the target, or of what the top quality gives at the
    # frame rate the machine managed (a loaded machine encodes fewer frames; each may then be larger).
    top_kbps = f["fps"] * FakeCodec().base * 1.2 ** max(FakeCodec.qualities) * 8 / 1000
    assert f["kbps"] >= 0.6 * min(100, top_kbps)
    assert f["skipped_by_rate_control"] <= 3  # only while the empty budget first fills


class StuckSource(Source):
    """A camera that delivers two frames and then hangs, like an unplugged USB camera can."""

    def __init__(self, *a, **k):
        super().__init__(64, 48, 20)
        self.release = threading.Event()
        self.count = 0

    def read(self):
        import numpy as np

        self.count += 1
        if self.count > 2:
            self.release.wait(30)
            return None
        return np.zeros((48, 64, 3), np.uint8), time.time_ns() // 1000


def test_a_stalled_camera_is_reported_so_the_watchdog_stops_being_fed(tmp_path, monkeypatch):
    source = StuckSource()
    monkeypatch.setattr(pipeline_module, "open_source", lambda *a, **k: source)
    with ServerThread(tmp_path) as server:
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--fps", 20), codec=FakeCodec())
        pipe.start()
        wait_until(lambda: len(server.received) == 2, 10)
        assert pipe.problems(stall_timeout=5) == []
        problems = wait_until(lambda: pipe.problems(stall_timeout=0.5) and pipe.problems(0.5), 5)
        assert any(p.startswith("capture made no progress") for p in problems)
        source.release.set()
        pipe.stop()
