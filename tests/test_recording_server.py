"""``edgecodec serve --record`` as a user runs it: rotation options, and a clean stop seals every file."""
from __future__ import annotations

import signal

import pytest

from edgecodec.recording import RecordingReader
from tests.desktop_processes import free_port, start_edge, start_server, stop, wait_for

pytestmark = pytest.mark.timeout(300)


def frames_in(paths):
    total = 0
    for path in paths:
        with RecordingReader(path) as reader:
            total += len(reader.scan().frames)
    return total


def test_serve_rotates_by_size_and_seals_every_file_on_sigterm(tmp_path):
    record = tmp_path / "rec"
    server, port = start_server(tmp_path, ("gate",), "--record", str(record), "--record-rotate-mb", "0.02",
                                "--http", f"127.0.0.1:{free_port()}")
    edge = start_edge(tmp_path, port, "gate", 96, 64, 25)
    try:
        wait_for(lambda: len(list(record.rglob("*.ecr"))) >= 3, 120, "three rotated files", server)
    finally:
        stop(edge)
        assert stop(server, signal.SIGTERM) == 0
    files = sorted(record.rglob("*.ecr"))
    assert all(p.parent.name == "gate" for p in files)
    for path in files:
        with RecordingReader(path) as reader:
            scan = reader.scan()
            entries, tail = reader.index()
            assert scan.intact and scan.frames
            # files rotate at a key frame past the limit, and at twice the limit whatever comes
            assert path.stat().st_size <= 2 * 0.02 * (1 << 20) + 8192
            assert tail == reader.size and len(entries) == len(scan.frames)  # closed with a final index
    sequences = []
    for path in files:
        with RecordingReader(path) as reader:
            sequences += [f.sequence for f in reader.scan().frames]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
