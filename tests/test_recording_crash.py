"""Crash safety with real processes: ``kill -9`` of a recorder leaves every complete frame readable,
and a torn last record is detected, never decoded, and cut off by ``edgecodec repair``."""
from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from edgecodec.recording import RecordingReader
from tests.desktop_processes import EXE, start_edge, start_server, stop, wait_for

pytestmark = pytest.mark.timeout(300)


def logged_sequences(frame_log):
    if not frame_log.exists():
        return []
    lines = frame_log.read_text().splitlines()
    return [json.loads(line)["sequence"] for line in lines if line.endswith("}")]


def test_server_killed_mid_stream_leaves_every_stored_frame_readable(tmp_path):
    record, frame_log = tmp_path / "rec", tmp_path / "frames.jsonl"
    server, port = start_server(tmp_path, ("porch",), "--record", str(record), "--frame-log", str(frame_log))
    edge = start_edge(tmp_path, port, "porch", 96, 64, 25)
    try:
        wait_for(lambda: len(logged_sequences(frame_log)) >= 40, 120, "40 stored frames", server)
        assert stop(server, signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop(server, signal.SIGKILL)
        stop(edge)
    (path,) = sorted(record.rglob("*.ecr"))
    with RecordingReader(path) as reader:
        assert reader.camera_id == "porch"
        scan = reader.scan()
        packets = [reader.read(f) for f in scan.frames]
    assert all(d.at_end for d in scan.damage)  # at most a torn tail, never damage before it
    logged = logged_sequences(frame_log)
    recorded = [f.sequence for f in scan.frames]
    # The frame log is written just before the recorder, so it may hold one frame more.
    assert recorded == logged[: len(recorded)] and len(logged) - len(recorded) <= 1
    assert len(recorded) >= 40
    repaired = subprocess.run([*EXE, "repair", str(path)], capture_output=True, text=True, timeout=60)
    assert repaired.returncode == 0, repaired.stderr
    out = tmp_path / "png"
    exported = subprocess.run([*EXE, "export", str(path), "-o", str(out), "--json"], capture_output=True,
                              text=True, timeout=200)
    assert exported.returncode == 0, exported.stderr
    report = json.loads(exported.stdout)
    assert report["frames"] == len(recorded) and report["bytes"] == sum(map(len, packets))


WRITER = textwrap.dedent("""
    import os, sys, time
    from edgecodec.recording import RecordingWriter, writer as writer_module
    from tests.recording_helpers import fake_packet

    rec = RecordingWriter(sys.argv[1], "cam", index_every=4)
    for i in range(10):
        rec.append(fake_packet(i, size=5000))
    real_write = os.write

    def write_half_then_hang(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        print("torn", flush=True)
        time.sleep(600)

    writer_module.os.write = write_half_then_hang
    rec.append(fake_packet(10, size=5000))
""")


def test_writer_killed_inside_a_write_leaves_a_torn_tail_that_repair_cuts(tmp_path):
    path = tmp_path / "torn.ecr"
    repo = pathlib.Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert proc.stdout.readline().strip() == "torn"
        assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop(proc, signal.SIGKILL)
    with RecordingReader(path) as reader:
        scan = reader.scan()
        assert [f.sequence for f in scan.frames] == list(range(10))
        assert len(scan.damage) == 1 and scan.damage[0].at_end
        torn = scan.damage[0].length
        assert 0 < torn < 5100
    checked = subprocess.run([*EXE, "repair", "--dry-run", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "would be truncated" in checked.stdout and "torn last record" in checked.stdout
    fixed = subprocess.run([*EXE, "repair", str(path)], capture_output=True, text=True, timeout=60)
    assert fixed.returncode == 0 and f"truncated, {torn} bytes removed" in fixed.stdout
    with RecordingReader(path) as reader:
        scan = reader.scan()
        assert scan.intact and len(scan.frames) == 10
