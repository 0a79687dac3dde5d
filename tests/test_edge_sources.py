"""Frame sources: the synthetic scene and video files through OpenCV."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecodec.edge.sources import OpenCVSource, SourceError, open_source
from edgecodec.testscene import TestScene


def test_synthetic_scene_moves_and_each_frame_is_reproducible_from_its_timestamp():
    scene = TestScene(160, 120)
    a, b = scene.render(10_000_000), scene.render(10_500_000)
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 1  # half a second later, things have moved
    assert np.array_equal(TestScene(160, 120).render(10_000_000), a)


def test_synthetic_source_stamps_frames_with_the_time_they_show():
    source = open_source("synthetic", 96, 64, 10)
    image, ts = source.read()
    assert np.array_equal(image, source.scene.render(ts))


@pytest.fixture()
def video(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
    for i in range(5):
        frame = np.full((60, 80, 3), i * 40, np.uint8)
        writer.write(frame)
    writer.release()
    return str(path)


def test_video_file_frames_are_resized_to_the_configured_size_and_end(video):
    source = OpenCVSource(video, 40, 30, 10)
    source.open()
    frames = []
    while (got := source.read()) is not None:
        frames.append(got[0])
    source.close()
    assert len(frames) == 5 and frames[0].shape == (30, 40, 3)
    assert not source.live


def test_a_looping_video_file_starts_again_at_its_end(video):
    source = OpenCVSource(video, 80, 60, 10, loop=True)
    source.open()
    frames = [source.read()[0] for _ in range(7)]
    assert abs(int(frames[5].mean()) - int(frames[0].mean())) <= 2


def test_an_unopenable_source_raises_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="cannot open"):
        OpenCVSource(str(tmp_path / "nothing.mp4"), 64, 48, 10).open()
