"""The chunked-transfer state machines on their own: loss, duplicates, resumption, limits."""
from __future__ import annotations

import random

import pytest

from firmware_bridge.framing import crc32
from firmware_bridge.messages import FrameBegin, FrameChunk, XferState
from firmware_bridge.transfer import ChunkSizer, FrameReceiver, FrameSender

pytestmark = pytest.mark.timeout(60)  # no test may hang (needs pytest-timeout)


def run_transfer(data: bytes, loss: float, seed: int, chunk=64, window=8, max_rounds=5000):
    """Drive a sender and a receiver through a link that loses each frame with probability ``loss``.

    Returns (frames delivered, sender). A round in which no status comes back acts as a timeout.
    """
    rng = random.Random(seed)
    tx, rx = FrameSender(data, 1, chunk, window), FrameReceiver(1 << 20, 256)
    delivered, seq = [], 0
    lost = lambda: rng.random() < loss  # noqa: E731
    for _ in range(max_rounds):
        if tx.done:
            break
        replies, seq = [], seq + 1
        if not tx.begun:
            tx.record_send(seq, None)
            if not lost():
                replies.append(rx.on_begin(tx.begin(), seq & 0xFF))
        else:
            for index in tx.eligible():
                seq += 1
                tx.record_send(seq, index)
                if not lost():
                    status, frame = rx.on_chunk(tx.chunk(index), seq & 0xFF, True)
                    if frame is not None:
                        delivered.append(frame)
                    replies.append(status)
        answered = False
        for status in replies:
            if status is not None and not lost():
                tx.on_status(status)
                answered = True
        if not answered:
            tx.expire() if tx.begun else tx.suspend()
    return delivered, tx


@pytest.mark.parametrize("loss,seed", [(0.0, 1), (0.2, 2), (0.5, 3)])
def test_lossy_transfer_delivers_the_frame_once_and_bit_exact(loss, seed):
    data = random.Random(seed).randbytes(5000)
    delivered, tx = run_transfer(data, loss, seed)
    assert tx.done and delivered == [data]
    if loss == 0:
        assert tx.resends == 0 and tx.sends == tx.n


def test_only_lost_chunks_are_resent():
    data = random.Random(4).randbytes(64 * 40)
    _, tx = run_transfer(data, 0.1, 4)
    assert tx.done and tx.sends < 2 * tx.n


def test_receiver_refuses_a_frame_beyond_its_buffer():
    rx = FrameReceiver(max_frame=1000, max_chunk=100)
    assert rx.on_begin(FrameBegin(1, 1001, 100, 0), 0).state == XferState.TOO_LARGE
    assert rx.on_begin(FrameBegin(1, 500, 101, 0), 0).state == XferState.BAD_PARAMS
    assert rx.on_begin(FrameBegin(1, 0, 10, 0), 0).state == XferState.BAD_PARAMS
    assert not rx.busy


def test_repeated_begin_after_completion_answers_complete_without_redelivery():
    data = b"frame" * 30
    rx = FrameReceiver(1000, 64)
    begin = FrameBegin(9, len(data), 64, crc32(data))
    rx.on_begin(begin, 1)
    frames = [rx.on_chunk(FrameChunk(9, i, data[i * 64:i * 64 + 64]), 2, False)[1] for i in range(3)]
    assert frames[-1] == data
    assert rx.on_begin(begin, 3).state == XferState.COMPLETE
    status, again = rx.on_chunk(FrameChunk(9, 0, data[:64]), 4, True)
    assert status.state == XferState.COMPLETE and again is None


def test_resumed_begin_reports_the_chunks_already_held():
    data = bytes(range(200)) * 5
    rx = FrameReceiver(4096, 100)
    begin = FrameBegin(3, len(data), 100, crc32(data))
    rx.on_begin(begin, 0)
    for i in (0, 1, 3, 9):
        rx.on_chunk(FrameChunk(3, i, data[i * 100:i * 100 + 100]), 0, False)
    status = rx.on_begin(begin, 7)
    assert (status.state, status.next, status.mask, status.echo_seq) == (XferState.RECEIVING, 2, 0b1000001, 7)
    tx = FrameSender(data, 3, 100, 8)
    tx.record_send(7, None)
    tx.on_status(status)
    assert tx.eligible() == [2, 4, 5, 6, 7, 8]  # 9 is held but lies beyond the window


def test_receiver_restart_makes_the_sender_begin_again():
    data = b"x" * 300
    tx = FrameSender(data, 5, 100, 4)
    tx.record_send(1, None)
    tx.on_status(FrameReceiver(1000, 100).on_begin(tx.begin(), 1))
    assert tx.begun
    status, _ = FrameReceiver(1000, 100).on_chunk(tx.chunk(0), 2, True)  # a rebooted receiver
    tx.on_status(status)
    assert status.state == XferState.UNKNOWN and not tx.begun and tx.restarts == 1


def test_crc_mismatch_drops_the_transfer_and_is_reported():
    data = b"y" * 150
    rx = FrameReceiver(1000, 100)
    rx.on_begin(FrameBegin(2, 150, 100, crc32(data) ^ 1), 0)
    rx.on_chunk(FrameChunk(2, 0, data[:100]), 0, False)
    status, frame = rx.on_chunk(FrameChunk(2, 1, data[100:]), 1, False)
    assert status.state == XferState.CRC_MISMATCH and frame is None and not rx.busy


def test_wrong_length_and_out_of_range_chunks_are_ignored():
    rx = FrameReceiver(1000, 100)
    rx.on_begin(FrameBegin(2, 250, 100, 0), 0)
    rx.on_chunk(FrameChunk(2, 0, b"short"), 0, False)
    rx.on_chunk(FrameChunk(2, 3, b"z" * 100), 0, False)
    rx.on_chunk(FrameChunk(2, 2, b"z" * 100), 0, False)  # the last chunk holds 50 bytes
    assert rx.stats["bad_chunks"] == 3


def test_chunk_sizer_uses_large_chunks_when_clean_and_small_ones_when_noisy():
    sizer = ChunkSizer()
    assert sizer.choose(256) == 256
    sizer.observe(sent=100, lost=95, chunk_size=256)
    sizer.observe(sent=100, lost=95, chunk_size=256)
    assert sizer.choose(256) <= 48
    assert ChunkSizer(0.01).choose(1020) in (24, 32, 48)
