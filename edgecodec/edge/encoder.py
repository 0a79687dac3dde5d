"""Encode stage: take the newest captured frame, pick its quality, encode it, pass the packet on.

The hand-off to the sender is a bounded queue; while it is full the encoder waits, the capture
slot keeps only the newest frame, and the excess is dropped at the source and counted.
"""
from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass

from edgecodec.bitstream import Kind
from edgecodec.edge.stage import Stage
from edgecodec.latest import LatestSlot

log = logging.getLogger(__name__)


def load_codec(model: str, threads: int, encoder: str, width: int, height: int, runs: int = 5):
    """The codec for the edge. With ``encoder="auto"``, the faster of the two encoders here (see
    ``time_encoders``)."""
    from edgecodec.codec import Codec
    from edgecodec.models import ModelBundle

    bundle = ModelBundle.load(model or None)
    if encoder == "auto":
        ms = time_encoders(bundle, threads, width, height, runs)
        encoder = min(ms, key=ms.get)
        log.info("encoder: int8 %.1f ms, float %.1f ms a %dx%d frame; using %s", ms["int8"], ms["float"],
                 width, height, encoder)
    return Codec(bundle, threads=threads, encoder=encoder)


def time_encoders(bundle, threads: int, width: int, height: int, runs: int = 5) -> dict[str, float]:
    """Median milliseconds of each encoder's network on a frame of the camera's size, in turns.

    The int8 model is meant for ARM boards, but XNNPACK's int8 kernels on an x86 CPU without int8
    dot products are slower than its float ones (32 against 26 ms a 640x480 frame on one thread of
    the 2-core machine these figures come from), and the float twin writes the same bitstream, at
    1.9 % fewer bits for the same PSNR (BD-rate on Kodak)."""
    from edgecodec.codec import Codec, pad_image
    from edgecodec.testscene import TestScene

    frame = pad_image(TestScene(width, height).render(0))
    quality = bundle.qualities[len(bundle.qualities) // 2]
    codecs = {kind: Codec(bundle, threads=threads, encoder=kind) for kind in ("int8", "float")}
    times: dict[str, list[float]] = {kind: [] for kind in codecs}
    for i in range(runs + 1):
        for kind, codec in codecs.items():  # in turns, so both see the same machine
            t0 = time.perf_counter()
            codec.analyse(frame, quality)
            if i:  # the first run of each allocates
                times[kind].append(time.perf_counter() - t0)
    return {kind: 1000 * sorted(t)[len(t) // 2] for kind, t in times.items()}


@dataclass(frozen=True)
class Encoded:
    sequence: int
    timestamp_us: int
    quality: int
    packet: bytes


class EncodeStage(Stage):
    name = "encode"

    def __init__(self, codec, slot: LatestSlot, outbox: queue.Queue, rate):
        super().__init__()
        self.codec = codec
        self.slot = slot
        self.outbox = outbox
        self.rate = rate  # RateController or FixedQuality
        self.encoded = 0
        self.skipped = 0  # frames the rate controller left out
        self.bytes = 0
        self.encode_ms = 0.0  # running average

    def run(self) -> None:
        while True:
            frame = self.slot.get(timeout=0.2)
            self.beat()
            if frame is None:
                if self.stopping:
                    return  # the slot is empty: everything captured was handled
                continue
            rate = self.rate  # read once: the bridge may replace it between frames
            quality = rate.choose(time.monotonic())
            if quality is None:
                self.skipped += 1
                continue
            t0 = time.perf_counter()
            packet = self.codec.encode(frame.image, quality, kind=Kind.FRAME, sequence=frame.sequence,
                                       timestamp_us=frame.timestamp_us)
            ms = (time.perf_counter() - t0) * 1000
            self.encode_ms = ms if not self.encoded else self.encode_ms + 0.1 * (ms - self.encode_ms)
            rate.observe(quality, len(packet), time.monotonic())
            self.encoded += 1
            self.bytes += len(packet)
            item = Encoded(frame.sequence, frame.timestamp_us, quality, packet)
            while True:
                try:
                    self.outbox.put(item, timeout=0.2)
                    break
                except queue.Full:
                    self.beat()  # waiting on a slow network is not a stall of the encoder
