"""tools/bench_serial.py runs end to end and reports frames per minute and overhead."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)  # no test may hang (needs pytest-timeout)

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_bench_serial_reports_frames_per_minute_and_overhead_as_json(tmp_path):
    frame = tmp_path / "q1.ecc"
    frame.write_bytes(bytes(range(256)) * 6)
    proc = subprocess.run([sys.executable, "-m", "tools.bench_serial", "--frame", str(frame), "--bauds", "460800",
                           "--seconds", "0", "--min-frames", "2", "--json"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (result,) = report["results"]
    assert report["frame_bytes"] == 1536 and result["frames"] >= 2 and result["bit_exact"]
    assert 0 < result["frames_per_minute"] <= result["ideal_frames_per_minute"]
    assert 0 < result["overhead"] < 0.2
