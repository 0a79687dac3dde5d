"""``edgecodec demo``: two real processes on loopback, figures printed, exit 0, all by itself."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.stream_support import REPO, edgecodec_cmd

pytestmark = pytest.mark.timeout(180)


def test_demo_streams_the_synthetic_scene_and_reports_rate_quality_and_latency():
    out = subprocess.run(edgecodec_cmd("demo", "--duration", "3", "--width", "160", "--height", "120",
                                       "--fps", "10", "--json"),
                         capture_output=True, text=True, timeout=150, cwd=REPO)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    # How many frames 3 s yield depends on the machine's load; that they stream, in order, once each,
    # and are measured, does not.
    assert figures["stored"] > 0 and figures["frames_in_order"] and figures["duplicates"] == 0
    assert figures["kbps"] > 0 and figures["fps"] > 0
    assert 20 < figures["psnr_db"] < 60  # decoded frames compared with the scene they show
    assert 0 < figures["latency_decoded_ms"]["median"] < 2000


def test_demo_prints_readable_figures():
    out = subprocess.run(edgecodec_cmd("demo", "--duration", "2", "--width", "96", "--height", "64"),
                         capture_output=True, text=True, timeout=150, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for word in ("frames/s", "kbit/s", "PSNR", "latency"):
        assert word in out.stdout


def test_stream_benchmark_reports_latency_drops_server_cpu_and_machine_speed_as_json():
    out = subprocess.run([sys.executable, "-m", "tools.bench_stream", "--duration", "2", "--warmup", "0.5",
                          "--width", "96", "--height", "64", "--fps", "10", "--cameras", "3", "--json"],
                         capture_output=True, text=True, timeout=150, cwd=REPO)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["stored"] > 5 and r["replayed_frames"] > 20 and not r["replay_errors"]
    assert r["captured"] == r["encoded"] + r["dropped_at_source"]
    assert r["latency_decoded_ms"]["median"] > 0 and "server_ingest_cpu_percent_per_camera" in r
    assert r["encoder"] in ("int8", "float") and r["decoder"] in ("full", "live")
    assert r["analysis"] in ("full", "fast")
    assert r["reference_jpeg_ms"]["before"] > 0 and r["reference_jpeg_ms"]["after"] > 0


@pytest.mark.parametrize("decoder, analysis", [("full", "full"), ("live", "fast")])
def test_stream_benchmark_encodes_and_decodes_with_the_networks_it_is_asked_for(decoder, analysis):
    from edgecodec.models import ModelBundle

    bundle = ModelBundle.load()
    if (decoder == "live" and not bundle.has_live_decoder) or (analysis == "fast" and not bundle.has_fast_encoder):
        pytest.skip("the shipped model lacks the live decoder or the fast encoder")
    out = subprocess.run([sys.executable, "-m", "tools.bench_stream", "--duration", "1.5", "--warmup", "0.5",
                          "--width", "96", "--height", "64", "--fps", "10", "--decoder", decoder,
                          "--edge-encoder", "int8", "--edge-analysis", analysis, "--json"],
                         capture_output=True, text=True, timeout=150, cwd=REPO)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["decoder"], r["encoder"], r["analysis"]) == (decoder, "int8", analysis)
    assert r["decoded"] > 0 and r["psnr_db"] > 20
