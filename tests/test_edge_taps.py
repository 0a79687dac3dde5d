"""The encoder's taps (the serial bridge's way in): every encoded frame is offered once, before the
sender's queue and whether or not there is one."""
from __future__ import annotations

import queue
import time

import numpy as np
import pytest

from edgecodec.edge.capture import Captured
from edgecodec.edge.encoder import EncodeStage
from edgecodec.edge.ratecontrol import FixedQuality
from edgecodec.latest import LatestSlot

pytestmark = pytest.mark.timeout(30)


class FakeCodec:
    def encode(self, image, quality, kind, sequence, timestamp_us):
        return bytes([quality, sequence % 256])


class Tap:
    def __init__(self):
        self.items = []

    def offer(self, item):
        self.items.append(item)


def run_frames(outbox, n):
    slot = LatestSlot()
    stage = EncodeStage(FakeCodec(), slot, outbox, FixedQuality(2))
    tap = Tap()
    stage.add_tap(tap)
    stage.start()
    for seq in range(n):
        slot.put(Captured(seq, seq * 100_000, np.zeros((8, 8, 3), np.uint8)))
        deadline = time.monotonic() + 5
        while len(tap.items) <= seq and time.monotonic() < deadline:
            time.sleep(0.01)
    return stage, tap


def test_a_tap_gets_every_frame_once_while_the_senders_queue_is_full():
    outbox = queue.Queue(maxsize=1)
    stage, tap = run_frames(outbox, 1)
    for seq in (1, 2):
        stage.slot.put(Captured(seq, seq * 100_000, np.zeros((8, 8, 3), np.uint8)))
        time.sleep(0.5)  # the encoder retries its put() meanwhile; the tap must not see the frame again
    assert [i.sequence for i in tap.items] == [0, 1]  # frame 2 waits in the slot behind the blocked put
    stage.stop()
    outbox.get()
    outbox.get()
    stage.join(5)
    assert [i.sequence for i in tap.items] == [0, 1, 2]


def test_without_a_senders_queue_the_taps_take_every_frame():
    stage, tap = run_frames(None, 3)
    stage.stop()
    stage.slot.close()
    assert stage.join(5)
    assert [i.sequence for i in tap.items] == [0, 1, 2] and stage.encoded == 3 and stage.error is None
