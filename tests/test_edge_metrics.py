"""The edge's /metrics: Prometheus text of the pipeline's figures, key and delta frames apart, served
on [service] metrics_listen (off by default), with one-line errors for a bad address."""
from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.request

import pytest

from edgecodec.edge import config as cfg
from edgecodec.edge import metrics, service
from edgecodec.edge.pipeline import EdgePipeline
from edgecodec.errors import ConfigError, EdgecodecError
from edgecodec.sdnotify import Notifier
from tests.stream_support import FakeCodec, ServerThread, wait_until
from tests.test_edge_pipeline import edge_config

pytestmark = pytest.mark.timeout(60)

FIGURES = {"camera": 'yard "north"', "captured": 120, "dropped_at_source": 7, "skipped_by_rate_control": 3,
           "spool_dropped": 1, "key_frames": 2, "delta_frames": 108, "key_bytes": 5000, "delta_bytes": 900,
           "encode_ms": 12.5, "fps": 9.8, "kbps": 48.2, "spool_frames": 4, "sent": 100, "acked": 99,
           "connected": False, "connects": 3}

SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


def parse(text: str) -> dict:
    """{(name, labels text): value} of every sample; asserts every metric has HELP and TYPE first."""
    out, declared = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif not line.startswith("#"):
            name, labels, value = SAMPLE.match(line).groups()
            assert name in declared
            out[(name, labels)] = float(value)
    return out


def get(port: int, path: str = "/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_every_metric_is_rendered_with_key_and_delta_frames_and_bits_apart():
    samples = parse(metrics.render(FIGURES))
    cam = 'camera="yard \\"north\\""'
    assert {name for name, *_ in metrics.METRICS} == {name for name, _ in samples}
    assert samples[("edgecodec_edge_frames_encoded_total", cam + ',kind="key"')] == 2
    assert samples[("edgecodec_edge_frames_encoded_total", cam + ',kind="delta"')] == 108
    assert samples[("edgecodec_edge_encoded_bits_total", cam + ',kind="key"')] == 40000
    assert samples[("edgecodec_edge_encoded_bits_total", cam + ',kind="delta"')] == 7200
    assert samples[("edgecodec_edge_frames_dropped_total", cam + ',where="source"')] == 7
    assert samples[("edgecodec_edge_spool_frames", cam)] == 4
    assert samples[("edgecodec_edge_link_connected", cam)] == 0
    assert samples[("edgecodec_edge_encode_milliseconds", cam)] == 12.5


def test_metrics_are_off_by_default_and_a_bad_address_is_a_config_error():
    assert cfg.EdgeConfig().service.metrics_listen == ""
    with pytest.raises(ConfigError, match="metrics-listen"):
        import argparse

        parser = argparse.ArgumentParser()
        cfg.add_arguments(parser)
        cfg.load(None, parser.parse_args(["--metrics-listen", "9478", "--secret", "x" * 16]))


def test_a_running_pipeline_is_scraped_with_its_live_figures(tmp_path):
    with ServerThread(tmp_path) as server:
        pipe = EdgePipeline(edge_config(tmp_path, server.url, "--fps", 20), codec=FakeCodec())
        pipe.start()
        scrape = metrics.MetricsServer("127.0.0.1:0", pipe.figures)
        try:
            wait_until(lambda: pipe.figures()["acked"] >= 5, 20, what="5 acknowledged frames")
            content_type, text = get(scrape.address[1])
            with pytest.raises(urllib.error.HTTPError):
                get(scrape.address[1], "/other")
        finally:
            scrape.close()
            pipe.stop()
    samples = parse(text)
    assert content_type.startswith("text/plain; version=0.0.4")
    key = samples[("edgecodec_edge_frames_encoded_total", 'camera="cam1",kind="key"')]
    delta = samples[("edgecodec_edge_frames_encoded_total", 'camera="cam1",kind="delta"')]
    assert key >= 5 and delta == 0  # this stand-in codec codes only key frames
    assert samples[("edgecodec_edge_encoded_bits_total", 'camera="cam1",kind="key"')] > 0
    assert samples[("edgecodec_edge_frames_captured_total", 'camera="cam1"')] >= key
    assert samples[("edgecodec_edge_link_connected", 'camera="cam1"')] == 1


def test_an_address_already_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(EdgecodecError, match="cannot listen there"):
            metrics.MetricsServer(f"127.0.0.1:{taken.getsockname()[1]}", dict)


class FakePipeline:
    def __init__(self):
        self.stopped = threading.Event()

    def start(self):
        pass

    def stop(self):
        self.stopped.set()

    def done(self):
        return False

    def failure(self):
        return None

    def problems(self, stall_timeout):
        return []

    def figures(self):
        return {**FIGURES, "camera": "cam1"}


def test_the_service_serves_metrics_while_it_runs_and_stops_serving_after(monkeypatch):
    started = {}
    real = metrics.MetricsServer

    class Recorded(real):
        def __init__(self, *args):
            super().__init__(*args)
            started["server"] = self
            started["ready"].set()

    started["ready"] = threading.Event()
    monkeypatch.setattr(metrics, "MetricsServer", Recorded)
    config = cfg.EdgeConfig(service=cfg.ServiceConfig(metrics_listen="127.0.0.1:0"))
    stop, pipeline = threading.Event(), FakePipeline()
    runner = threading.Thread(target=service.run, args=(config, stop),
                              kwargs={"notifier": Notifier(environ={}), "pipeline": pipeline})
    runner.start()
    try:
        assert started["ready"].wait(10)
        port = started["server"].address[1]
        assert parse(get(port)[1])[("edgecodec_edge_spool_frames", 'camera="cam1"')] == 4
    finally:
        stop.set()
        runner.join(10)
    with pytest.raises(OSError):
        get(port)
