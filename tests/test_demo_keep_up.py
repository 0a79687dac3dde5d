"""``edgecodec demo`` says when the machine could not keep the frame rate, naming the drops and the encode
time against the frame period: the message logic on given figures (no timing)."""
from __future__ import annotations

from edgecodec.cli.demo import DROP_SHARE_NOTED, keep_up_note


def figures(captured=300, dropped=0, encode_ms=10.0, fps=30.0):
    return {"captured": captured, "dropped_at_source": dropped, "encode_ms": encode_ms, "fps": fps}


def test_a_machine_that_keeps_up_gets_no_note():
    assert keep_up_note(figures(dropped=2, encode_ms=20.0), 30.0) is None


def test_an_encoder_slower_than_the_frame_period_is_named_with_both_times_and_the_drops():
    note = keep_up_note(figures(captured=300, dropped=210, encode_ms=100.0, fps=9.0), 30.0)
    assert "did not keep 30 frames/s" in note
    assert "210 of 300 captured frames (70 %)" in note
    assert "100 ms a frame against a frame period of 33 ms" in note
    assert "the 9.0 frames/s that got through" in note and "--fps 8" in note


def test_drops_with_a_fast_enough_encoder_point_at_the_rest_of_the_machine():
    note = keep_up_note(figures(captured=300, dropped=60, encode_ms=20.0), 30.0)
    assert "60 of 300" in note and "20 ms of the 33 ms frame period" in note and "other processes" in note


def test_a_slow_encoder_is_noted_even_before_frames_are_dropped():
    assert "against a frame period of 33 ms" in keep_up_note(figures(dropped=0, encode_ms=40.0), 30.0)


def test_the_drop_threshold_is_a_share_of_captured_frames():
    at = int(300 * DROP_SHARE_NOTED)
    assert keep_up_note(figures(dropped=at), 30.0) is None
    assert keep_up_note(figures(dropped=at + 1), 30.0) is not None
    assert keep_up_note(figures(captured=0, dropped=0, encode_ms=0.0), 30.0) is None
