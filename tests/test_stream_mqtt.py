"""An edge process streaming through a real mosquitto broker to a server process."""
from __future__ import annotations

import json
import time

import pytest

from tests.stream_support import (Mosquitto, free_port, logged_sequences, mosquitto_path,
                                  start_edge_process, start_server_process, stop_process, wait_until)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(mosquitto_path() is None,
                       reason="mosquitto is not installed (apt-get install -y mosquitto; .ci/run does)"),
]


def test_edge_streams_through_the_broker_and_catches_up_after_the_server_was_away(tmp_path):
    broker = Mosquitto(tmp_path)
    server = start_server_process(tmp_path, free_port(), "--mqtt", broker.url)
    edge = start_edge_process(tmp_path, broker.url)
    try:
        wait_until(lambda: len(logged_sequences(tmp_path)) >= 10, 60, what="frames over MQTT")
        assert stop_process(server) == 0  # frames now go unacknowledged: the edge spools them
        time.sleep(4)
        server = start_server_process(tmp_path, free_port(), "--mqtt", broker.url, name="server2")
        before = len(logged_sequences(tmp_path))
        wait_until(lambda: len(logged_sequences(tmp_path)) >= before + 40, 60, what="catch-up")
        assert stop_process(edge) == 0
    finally:
        stop_process(edge)
        stop_process(server)
        broker.close()
    f = json.loads((tmp_path / "edge.json").read_text())
    seqs = logged_sequences(tmp_path)
    assert f["spool_frames"] == 0
    assert seqs == sorted(set(seqs)) and len(seqs) == f["encoded"]  # every encoded frame, once, in order
