"""Real ``edgecodec edge`` and ``edgecodec serve`` processes on loopback, through outages.

The edge streams a small synthetic scene with the real codec at 10 frames/s; the server writes a
frame log. Every frame the edge captured must be stored exactly once, in order, whatever happens
in between (within the spool's capacity).
"""
from __future__ import annotations

import json
import signal
import time

import pytest

from tests.stream_support import (CuttableProxy, free_port, logged_sequences, start_edge_process,
                                  start_server_process, stop_process, wait_until)

pytestmark = pytest.mark.timeout(180)


def edge_figures(folder, name="edge") -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def assert_every_encoded_frame_stored_once_in_order(folder, figures: dict) -> None:
    """Frames dropped at the source (a loaded machine can stall the encoder) never existed; every
    other frame the edge captured must be stored exactly once, in order."""
    seqs = logged_sequences(folder)
    assert len(seqs) == len(set(seqs)), f"duplicates stored: {len(seqs) - len(set(seqs))}"
    assert seqs == sorted(seqs), "frames stored out of order"
    assert len(seqs) == figures["encoded"], (
        f"{figures['encoded']} frames encoded, {len(seqs)} stored; missing: "
        f"{sorted(set(range(figures['captured'])) - set(seqs))[:20]}, "
        f"{figures['dropped_at_source']} dropped at source")
    assert not seqs or seqs[-1] < figures["captured"]


def test_frames_captured_while_the_server_was_killed_arrive_once_in_order_after_it_returns(tmp_path):
    port = free_port()
    server = start_server_process(tmp_path, port)
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}")
    try:
        wait_until(lambda: len(logged_sequences(tmp_path)) >= 10, 60, what="streaming to start")
        server.send_signal(signal.SIGKILL)  # no goodbye, no flushed acknowledgements
        server.wait(10)
        before = len(logged_sequences(tmp_path))
        time.sleep(3)  # ~30 frames captured while nobody listens
        server = start_server_process(tmp_path, port, name="server2")
        wait_until(lambda: len(logged_sequences(tmp_path)) >= before + 40, 60, what="catch-up after restart")
        assert stop_process(edge) == 0
    finally:
        stop_process(edge)
        stop_process(server)
    f = edge_figures(tmp_path)
    assert f["spool_frames"] == 0 and f["spooled"] >= 20
    assert_every_encoded_frame_stored_once_in_order(tmp_path, f)


def test_frames_survive_a_silent_network_cut_and_arrive_in_order_when_it_is_restored(tmp_path):
    port = free_port()
    server = start_server_process(tmp_path, port)
    proxy = CuttableProxy(port)
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{proxy.port}")
    try:
        wait_until(lambda: len(logged_sequences(tmp_path)) >= 10, 60, what="streaming to start")
        proxy.cut = True  # packets vanish; neither side is told
        time.sleep(4)  # longer than the edge's 2 s ack timeout
        during = len(logged_sequences(tmp_path))
        proxy.restore()
        wait_until(lambda: len(logged_sequences(tmp_path)) >= during + 45, 60, what="catch-up after the cut")
        assert stop_process(edge) == 0
    finally:
        stop_process(edge)
        proxy.close()
        stop_process(server)
    f = edge_figures(tmp_path)
    assert f["connects"] >= 2 and f["spool_frames"] == 0
    assert_every_encoded_frame_stored_once_in_order(tmp_path, f)


def test_sigterm_drains_the_edge_quickly_and_delivers_everything_captured(tmp_path):
    port = free_port()
    server = start_server_process(tmp_path, port)
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}")
    try:
        wait_until(lambda: len(logged_sequences(tmp_path)) >= 10, 60, what="streaming to start")
        start = time.monotonic()
        assert stop_process(edge, signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - start < 5
        f = edge_figures(tmp_path)
        wait_until(lambda: len(logged_sequences(tmp_path)) == f["encoded"], 10, what="last frames")
    finally:
        stop_process(edge)
        stop_process(server)
    assert f["sent"] == f["acked"] == f["encoded"] and f["spool_frames"] == 0
    assert_every_encoded_frame_stored_once_in_order(tmp_path, f)


def test_frames_spooled_before_a_restart_of_the_edge_are_delivered_by_the_next_run(tmp_path):
    port = free_port()
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}")  # no server yet
    try:
        time.sleep(3)
        assert stop_process(edge, signal.SIGTERM, timeout=10) == 0
        first = edge_figures(tmp_path)
        assert first["spool_frames"] == first["encoded"] > 10
        server = start_server_process(tmp_path, port)
        edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}", name="edge2")
        wait_until(lambda: len(logged_sequences(tmp_path)) >= first["encoded"] + 10, 60,
                   what="spool from the first run, then live frames")
        assert stop_process(edge) == 0
    finally:
        stop_process(edge)
        if "server" in locals():
            stop_process(server)
    second = edge_figures(tmp_path, "edge2")
    seqs = logged_sequences(tmp_path)
    assert all(s < first["captured"] for s in seqs[: first["encoded"]])
    # The second run continues the same stream with higher sequence numbers, after the spooled ones.
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert len(seqs) == first["encoded"] + second["encoded"]


def test_wrong_secret_makes_the_edge_exit_with_an_error_and_keep_its_frames(tmp_path):
    port = free_port()
    (tmp_path / "secrets.toml").write_text('[cameras]\ncam1 = "a-different-secret-0123"\n')
    server = start_server_process(tmp_path, port)
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}", "--auth-retries", 2)
    try:
        code = edge.wait(60)  # gives up on its own, a non-zero exit for systemd to show
    finally:
        stop_process(edge)
        stop_process(server)
    assert code == 1
    assert logged_sequences(tmp_path) == []
    assert "wrong secret" in (tmp_path / "server.log").read_text()
    last = (tmp_path / "edge.log").read_text().strip().splitlines()[-1]
    assert last.startswith("edgecodec edge: error: server 127.0.0.1:")
    assert "refused camera 'cam1': wrong secret or unknown camera id" in last
    assert "gave up after 2 refusals in a row" in last
    assert "Traceback" not in (tmp_path / "edge.log").read_text()
    from edgecodec.edge.spool import Spool

    assert len(Spool(tmp_path / "edge-state" / "spool", 1 << 20).open()) > 0  # for the next run


def test_frames_spooled_by_an_edge_that_was_killed_are_delivered_by_the_next_run(tmp_path):
    port = free_port()
    edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}")  # no server: everything spools
    server = None
    try:
        wait_until(lambda: len(list((tmp_path / "edge-state" / "spool").glob("*.spool"))) > 0, 60,
                   what="a spool segment")
        time.sleep(3)
        edge.send_signal(signal.SIGKILL)  # power-cut style: no drain, no state written
        edge.wait(10)
        server = start_server_process(tmp_path, port)
        edge = start_edge_process(tmp_path, f"tcp://127.0.0.1:{port}", name="edge2")
        wait_until(lambda: len(logged_sequences(tmp_path)) >= 45, 60, what="old spool and new frames")
        assert stop_process(edge) == 0
    finally:
        stop_process(edge)
        if server is not None:
            stop_process(server)
    seqs = logged_sequences(tmp_path)
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    first_run = [s for s in seqs if s < 1024]
    assert len(first_run) >= 20
    # The crashed run had reserved numbers up to 1024: the next run continues above them, no repeats.
    assert all(s >= 1024 for s in seqs[len(first_run):])
