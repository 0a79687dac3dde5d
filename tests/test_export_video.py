"""``edgecodec export -o NAME.mp4``: H.264 that plays everywhere, each frame at its capture time.

The recording has an outage: five frames 200 ms apart, nothing for 10 s, three more. ffprobe (Debian's
ffmpeg package) must report H.264 and frame times with the same 10 s gap; a real Chromium must play it.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess

import pytest

from edgecodec.bitstream import Kind
from edgecodec.cli import main
from edgecodec.export import export
from edgecodec.testscene import TestScene
from edgecodec.videowriter import ffmpeg_path, pyav_available
from tests.recording_helpers import T0, write_recording

pytestmark = pytest.mark.timeout(240)
W, H = 96, 64
# capture times in seconds after the first frame: an outage of 10 s between frames 4 and 5
TIMES = [0.0, 0.2, 0.4, 0.6, 0.8, 10.8, 11.0, 11.2]
FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="needs ffprobe (apt-get install -y ffmpeg; .ci/run does)")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from edgecodec.codec import Codec

    codec = Codec.load(threads=1)
    scene = TestScene(W, H)
    stamps = [T0 + round(t * 1e6) for t in TIMES]
    packets = [codec.encode(scene.render(ts), 2, kind=Kind.FRAME, sequence=i, timestamp_us=ts)
               for i, ts in enumerate(stamps)]
    path = tmp_path_factory.mktemp("rec") / "cam-20261124-100000.ecr"
    write_recording(path, packets, index_every=3)
    return path


def probe(video) -> tuple[dict, list[float]]:
    """(the video stream's fields, every frame's presentation time in s)."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,pix_fmt:frame=pts_time", "-of", "json", str(video)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    doc = json.loads(out)
    return doc["streams"][0], [float(f["pts_time"]) for f in doc["frames"]]


def assert_h264_with_the_outage(video) -> None:
    stream, times = probe(video)
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert (stream["width"], stream["height"]) == (W, H)
    assert times == pytest.approx(TIMES, abs=1e-3)  # every frame, at its capture time: the gap stays 10 s


@needs_ffprobe
@pytest.mark.skipif(not pyav_available(), reason="needs PyAV (pip install av, or '.[video]')")
def test_mp4_export_is_h264_at_the_capture_times_with_the_outage_kept(recording, tmp_path, capsys):
    video = tmp_path / "out.mp4"
    assert main(["export", str(recording), "-o", str(video), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["video_codec"] == "h264" and report["video_backend"] == "pyav"
    assert report["video_timing"] == "capture times"
    assert report["video_seconds"] == pytest.approx(11.4, abs=1e-3)  # the last frame lasts one period
    assert_h264_with_the_outage(video)


@needs_ffprobe
@pytest.mark.skipif(ffmpeg_path() is None, reason="needs the ffmpeg program (apt-get install -y ffmpeg)")
def test_without_pyav_the_ffmpeg_program_writes_the_same_timing(recording, tmp_path):
    video = tmp_path / "out.mkv"
    report = export([str(recording)], str(video), video_backends=("ffmpeg",))
    assert report.video_backend == "ffmpeg" and report.video_codec == "h264"
    assert_h264_with_the_outage(video)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mkv"]  # its temporary frames are gone


@needs_ffprobe
@pytest.mark.skipif(not (pyav_available() or ffmpeg_path()), reason="needs PyAV or ffmpeg")
def test_a_constant_rate_is_kept_only_when_asked_for(recording, tmp_path):
    video = tmp_path / "even.mp4"
    report = export([str(recording)], str(video), fps=4.0)
    assert report.constant_rate and report.video_seconds == pytest.approx(2.0)
    _, times = probe(video)
    assert times == pytest.approx([n / 4 for n in range(len(TIMES))], abs=1e-3)


def test_opencv_mp4v_is_the_last_resort_and_says_so(recording, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "edgecodec.videowriter")
    video = tmp_path / "old.mp4"
    report = export([str(recording)], str(video), video_backends=("opencv",))
    assert report.video_codec == "mp4v" and report.video_backend == "opencv"
    assert "browsers do not play" in caplog.text and "loses the gaps" in caplog.text
    assert video.stat().st_size > 0


def test_a_bad_fps_is_a_usage_error(recording, tmp_path, capsys):
    assert main(["export", str(recording), "-o", str(tmp_path / "x.mp4"), "--fps", "0"]) == 2
    assert "--fps must be between 0 and 1000" in capsys.readouterr().err


# --- in a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
@pytest.mark.skipif(not (pyav_available() or ffmpeg_path()), reason="needs PyAV or ffmpeg")
def test_the_exported_mp4_plays_in_chromium(recording, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[dev]')")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    video = tmp_path / "out.mp4"
    export([str(recording)], str(video))
    page = tmp_path / "play.html"
    page.write_text('<!doctype html><video id="v" src="out.mp4" muted preload="auto"></video>')
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(page.as_uri())
        # Resolves once the browser has decoded a picture and played past the outage, or failed.
        result = driver.execute_async_script("""
            const done = arguments[arguments.length - 1], v = document.getElementById('v');
            const report = (what) => done({what, error: v.error && v.error.code, duration: v.duration,
                                            width: v.videoWidth, height: v.videoHeight, time: v.currentTime});
            v.addEventListener('error', () => report('error'));
            v.addEventListener('loadeddata', () => { v.currentTime = 11.1; });
            v.addEventListener('seeked', () => report('seeked'), {once: true});
            v.load();
        """)
    finally:
        driver.quit()
    assert result["what"] == "seeked" and result["error"] is None, result
    assert (result["width"], result["height"]) == (W, H)
    assert result["duration"] == pytest.approx(11.4, abs=0.05)  # the outage is in the timeline
