"""Sequence numbers keep increasing across restarts, and a lost state starts a new stream."""
from __future__ import annotations

from edgecodec.edge.stream import BLOCK, StreamState


def test_sequence_continues_exactly_after_a_clean_restart(tmp_path):
    state = StreamState(tmp_path / "s.json")
    taken = [state.next() for _ in range(5)]
    state.close()
    again = StreamState(tmp_path / "s.json")
    assert taken == [0, 1, 2, 3, 4] and again.next() == 5
    assert again.stream_id == state.stream_id


def test_after_a_crash_numbers_skip_ahead_but_never_repeat(tmp_path):
    state = StreamState(tmp_path / "s.json")
    taken = [state.next() for _ in range(BLOCK + 10)]  # crosses a reservation block; no close()
    again = StreamState(tmp_path / "s.json")
    assert again.next() > taken[-1]


def test_a_lost_or_damaged_state_file_starts_a_new_stream(tmp_path):
    first = StreamState(tmp_path / "s.json")
    first.close()
    (tmp_path / "s.json").write_text("{not json")
    second = StreamState(tmp_path / "s.json")
    assert second.stream_id != first.stream_id and second.next() == 0


def test_floor_keeps_numbers_above_what_the_spool_holds(tmp_path):
    assert StreamState(tmp_path / "s.json", floor=100).next() == 100
