"""The on-disk spool: order, acknowledgement, size limit, and what survives a restart or a crash."""
from __future__ import annotations

import pytest

from edgecodec.edge.spool import Spool
from edgecodec.errors import EdgecodecError
from tests.stream_support import frame_packet


def fill(spool, sequences, size=500):
    for seq in sequences:
        spool.append(seq, frame_packet(seq, size=size))


def test_frames_come_back_in_order_from_any_point_and_acks_delete_them(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2000).open()
    fill(spool, range(10))
    assert [seq for seq, _ in spool.frames()] == list(range(10))
    assert spool.next_after(4)[0] == 5 and spool.next_after(9) is None
    assert spool.ack(3) == 4
    assert [seq for seq, _ in spool.frames()] == list(range(4, 10))
    spool.ack(9)
    assert len(spool) == 0 and spool.next_after(None) is None
    assert not list(tmp_path.glob("*.spool"))  # fully acknowledged segments are deleted


def test_stored_packets_are_returned_byte_for_byte(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20).open()
    packets = {seq: frame_packet(seq, size=100 + seq) for seq in range(5)}
    for seq, packet in packets.items():
        spool.append(seq, packet)
    assert dict(spool.frames()) == packets


def test_a_full_spool_drops_the_oldest_frames_first_and_counts_them(tmp_path):
    spool = Spool(tmp_path, max_bytes=20_000, segment_bytes=4_000).open()
    fill(spool, range(100), size=500)  # ~55 kB into 20 kB
    held = [seq for seq, _ in spool.frames()]
    assert spool.bytes <= 20_000
    assert held == list(range(held[0], 100))  # a contiguous tail: the newest survive
    assert spool.dropped == held[0] == 100 - len(held)


def test_unacknowledged_frames_survive_a_restart(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=3000).open()
    fill(spool, range(20))
    spool.ack(7)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=3000).open()
    assert [seq for seq, _ in again.frames()] == list(range(8, 20))
    again.append(20, frame_packet(20))
    assert again.last_sequence() == 20


def test_frames_acked_before_a_crash_may_come_back_but_nothing_unacked_is_lost(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20).open()
    fill(spool, range(6))
    spool.ack(2)
    # no close(): the process dies here, with every appended frame already handed to the OS
    again = Spool(tmp_path, max_bytes=1 << 20).open()
    held = [seq for seq, _ in again.frames()]
    assert set(range(3, 6)) <= set(held) and held == sorted(held)


def test_a_torn_last_packet_is_cut_off_when_reopening(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20).open()
    fill(spool, range(3))
    spool.close()
    segment = next(tmp_path.glob("*.spool"))
    with open(segment, "ab") as f:
        f.write(frame_packet(3)[:100])  # power lost mid-write
    size_before = segment.stat().st_size
    again = Spool(tmp_path, max_bytes=1 << 20).open()
    assert [seq for seq, _ in again.frames()] == [0, 1, 2]
    assert segment.stat().st_size == size_before - 100
    again.append(3, frame_packet(3))
    assert [seq for seq, _ in again.frames()] == [0, 1, 2, 3]


def test_sequences_must_increase(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20).open()
    fill(spool, [5])
    with pytest.raises(EdgecodecError, match="does not follow"):
        spool.append(5, frame_packet(5))


def delta_packet(sequence: int, size: int = 500, reference: int = 1) -> bytes:
    from edgecodec import bitstream
    from edgecodec.bitstream import Header, Kind
    from tests.stream_support import MODEL_ID

    header = Header(kind=Kind.DELTA, model_id=MODEL_ID, width=64, height=48, channels=3, quality=1,
                    sequence=sequence, timestamp_us=1, reference=reference)
    return bitstream.pack(header, [bytes(size)])


def fill_stream(spool, sequences, key_every=10, size=500):
    for seq in sequences:
        spool.append(seq, frame_packet(seq, size=size) if seq % key_every == 0 else delta_packet(seq, size))


def test_a_full_spool_drops_the_delta_frames_whose_key_frame_it_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=20_000, segment_bytes=4_000).open()
    fill_stream(spool, range(100))  # key frames at 0, 10, 20, ...
    held = [seq for seq, _ in spool.frames()]
    assert held == list(range(held[0], 100)) and held[0] % 10 == 0  # starts with a key frame
    assert spool.dropped == held[0] and not spool.broken
    again = Spool(tmp_path, max_bytes=20_000, segment_bytes=4_000).open()  # and so after a restart
    assert [seq for seq, _ in again.frames()][0] == held[0]


def test_a_spool_that_dropped_every_key_frame_refuses_delta_frames_until_the_next_key_frame(tmp_path):
    spool = Spool(tmp_path, max_bytes=6_000, segment_bytes=2_000).open()
    fill_stream(spool, range(40), key_every=1000)  # one key frame, then only delta frames
    assert spool.broken and len(spool) == 0  # whatever is left could not be decoded
    dropped = spool.dropped
    assert spool.append(40, delta_packet(40)) == 1 and len(spool) == 0 and spool.dropped == dropped + 1
    assert not spool.admit(False)
    spool.append(41, frame_packet(41, size=500))
    spool.append(42, delta_packet(42))
    assert [seq for seq, _ in spool.frames()] == [41, 42] and not spool.broken
