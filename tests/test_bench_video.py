"""tools/bench_video.py: edgecodec stream/intra, MJPEG and x264 measured on a tiny synthetic clip."""
from __future__ import annotations

import importlib
import json
import math
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.timeout(180)  # no test may hang (needs pytest-timeout)

REPO = pathlib.Path(__file__).resolve().parents[1]
W, H, N, FPS = 96, 64, 12, 10.0
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="no ffmpeg on PATH (.ci/run installs Debian's ffmpeg)")


def _bench():
    return importlib.import_module("tools.bench_video")


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def codec():
    from edgecodec.codec import Codec
    return Codec.load(threads=1, encoder="int8")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A static textured scene, 12 frames of MJPG: what a fixed camera sees with nothing moving."""
    path = tmp_path_factory.mktemp("clip") / "static.avi"
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(7)
    frame = np.stack([128 + 70 * np.sin(xx / 5) * np.cos(yy / 7), 120 + 60 * np.cos((xx + yy) / 9),
                      100 + 50 * np.sin(xx / 3 + yy / 11)], axis=2) + rng.normal(0, 12, (H, W, 3))
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    for _ in range(N):
        writer.write(frame)
    writer.release()
    return path


def test_read_clip_gives_rgb_frames_and_the_frame_rate(bench, clip):
    frames, fps = bench.read_clip(clip, 100)
    assert len(frames) == N and fps == pytest.approx(FPS)
    assert frames[0].shape == (H, W, 3) and frames[0].dtype == np.uint8
    frames, _ = bench.read_clip(clip, 5)
    assert len(frames) == 5


def test_stream_mode_spends_fewer_bytes_than_intra_on_a_static_clip(bench, clip, codec):
    frames, fps = bench.read_clip(clip, N)
    stream = bench.edgecodec_point(codec, frames, fps, 3, intra=False)
    intra = bench.edgecodec_point(codec, frames, fps, 3, intra=True)
    for p in (stream, intra):
        assert p["frames"] == N and p["bytes"] > 0 and math.isfinite(p["psnr"]) and 15 < p["psnr"] < 100
        assert p["kbps"] == pytest.approx(p["bytes"] * 8 / (N / fps) / 1000)
    assert (stream["key_frames"], stream["delta_frames"]) == (1, N - 1)  # 1.2 s < the 2 s key interval
    assert 0 < stream["key_bytes"] < stream["bytes"] and intra["key_bytes"] == intra["bytes"]
    assert (intra["key_frames"], intra["delta_frames"]) == (N, 0)
    assert stream["encode_ms_key_median"] > 0 and stream["encode_ms_delta_median"] > 0
    assert intra["encode_ms_delta_median"] is None
    # the background is not re-sent: the stream costs about one key frame plus small deltas
    assert stream["bytes"] < 0.5 * intra["bytes"]
    assert stream["psnr"] > intra["psnr"] - 1.8


def test_mjpeg_point_counts_jpeg_bytes(bench, clip):
    frames, fps = bench.read_clip(clip, N)
    low, high = bench.mjpeg_point(frames, fps, 20), bench.mjpeg_point(frames, fps, 90)
    assert 0 < low["bytes"] < high["bytes"] and low["psnr"] < high["psnr"]
    assert math.isfinite(high["psnr"])


@needs_ffmpeg
def test_x264_point_decodes_every_frame_of_its_stream(bench, clip):
    exe, why = bench.find_ffmpeg()
    if exe is None:
        pytest.skip(why)
    frames, fps = bench.read_clip(clip, N)
    fast = bench.x264_point(frames, fps, 30, bench.X264_PRESETS[bench.X264_FAST], 20, exe)
    coarse = bench.x264_point(frames, fps, 45, bench.X264_PRESETS[bench.X264_FAST], 20, exe)
    assert fast["frames"] == N and 0 < coarse["bytes"] < fast["bytes"]
    assert math.isfinite(fast["psnr"]) and coarse["psnr"] < fast["psnr"]


def test_bd_rates_need_four_points_and_overlap(bench):
    ref = [{"kbps": r, "psnr": d} for r, d in ((100, 28), (200, 31), (400, 34), (800, 37))]
    half = [{"kbps": p["kbps"] / 2, "psnr": p["psnr"]} for p in ref]
    out = bench.bd_rates({bench.STREAM: half, bench.INTRA: ref, bench.MJPEG: ref[:3]})
    assert out[f"{bench.STREAM} vs {bench.INTRA}"]["percent"] == pytest.approx(-50, abs=0.01)
    assert out[f"{bench.STREAM} vs {bench.MJPEG}"]["percent"] is None


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "tools.bench_video", *args], capture_output=True, text=True,
                          timeout=170, cwd=REPO, **kw)


def test_cli_writes_json_and_plot(clip, tmp_path):
    out, png = tmp_path / "v.json", tmp_path / "v.png"
    proc = _run([str(clip), "--frames", str(N), "--qualities", "0,2,4,6", "--jpeg-qualities", "10,30,50,80",
                 "--crfs", "24,32,40,48", "--json", str(out), "--plot", str(png)])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["frames"] == N and result["fps"] == pytest.approx(FPS)
    assert [p["quality"] for p in result["curves"]["edgecodec stream"]] == [0, 2, 4, 6]
    bd = result["bd_rate_percent"]["edgecodec stream vs edgecodec intra"]
    assert bd["percent"] is not None and bd["percent"] < -30
    if shutil.which("ffmpeg"):
        assert len(result["curves"]["x264 medium"]) == 4
    assert png.stat().st_size > 1000
    assert "edgecodec stream vs edgecodec intra" in proc.stdout


def test_cli_without_ffmpeg_skips_x264_with_a_warning(clip, tmp_path):
    out = tmp_path / "v.json"
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no ffmpeg on this PATH
    proc = _run([str(clip), "--frames", "4", "--qualities", "2", "--jpeg-qualities", "50", "--json", str(out)],
                env=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning: x264 rows skipped" in proc.stderr
    result = json.loads(out.read_text())
    assert "x264 medium" not in result["curves"] and result["x264_skipped"]
    assert result["bd_rate_percent"]["edgecodec stream vs edgecodec intra"]["percent"] is None


def test_cli_errors_are_one_line_with_exit_codes(tmp_path):
    bad = tmp_path / "not_a_video.avi"
    bad.write_bytes(b"garbage" * 10)
    for path in (tmp_path / "missing.avi", bad):
        proc = _run([str(path), "--no-x264"])
        assert proc.returncode == 1
        assert proc.stderr.strip().startswith("error: cannot read") and len(proc.stderr.strip().splitlines()) == 1
    proc = _run([str(bad), "--qualities", "99"])
    assert proc.returncode == 2 and "--qualities" in proc.stderr
    assert _run(["--help"]).returncode == 0
