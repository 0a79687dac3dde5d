"""Encode stage: take the newest captured frame, pick its quality, encode it, pass the packet on.

The hand-off to the sender is a bounded queue; while it is full the encoder waits, the capture
slot keeps only the newest frame, and the excess is dropped at the source and counted. Taps (the serial
bridge) are offered every encoded frame too, first and without blocking; a tap decides itself what it
keeps. Without a sender (no network) the outbox is None and the taps are the only consumers.
"""
from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Optional, Protocol

from edgecodec.bitstream import Kind
from edgecodec.edge.stage import Stage
from edgecodec.latest import LatestSlot

log = logging.getLogger(__name__)


# With analysis "auto", the full analysis is kept while its encode takes at most this share of the frame
# period: the rest goes to capture, sending and the ups and downs of a busy board.
FULL_ANALYSIS_SHARE = 0.5


def load_codec(model: str, threads: int, encoder: str, width: int, height: int, runs: int = 5,
               analysis: str = "full", fps: float = 30.0, delegate: str | None = None):
    """The codec for the edge. ``encoder`` (int8, float or auto: the faster) and ``analysis`` (full,
    fast or auto) as in ``choose_encoder``, from the candidates timed by ``time_encoders``."""
    from edgecodec.codec import Codec
    from edgecodec.models import ModelBundle

    bundle = ModelBundle.load(model or None, hyper_threads=threads)
    log.info("hyper-synthesis and context products on %s", "the int8 kernel (AVX2)" if bundle.hyper.on_int8
             else "float32 (no AVX2 int8 kernel here)")
    if delegate:  # an accelerator runs the int8 full analysis (at the fixed sizes the model has)
        codec = Codec(bundle, threads=threads, encoder="int8", analysis="full", delegate=delegate)
        on = codec.bundle.encoder(codec.qualities[0], threads, size=(-(-height // 16) * 16, -(-width // 16) * 16),
                                  delegate=delegate)
        log.info("int8 encoder on %s", f"the delegate {delegate}" if on.delegate else "the CPU (delegate unavailable)")
        return codec
    analyses = [analysis] if analysis != "auto" else ["full", "fast"] if bundle.has_fast_encoder else ["full"]
    precisions = ["int8", "float"] if encoder == "auto" else [encoder]
    candidates = [(a, p) for a in analyses for p in precisions]
    if len(candidates) == 1:
        return Codec(bundle, threads=threads, encoder=precisions[0], analysis=analyses[0])
    ms = time_encoders(bundle, threads, width, height, candidates, runs)
    chosen, why = choose_encoder(ms, 1000.0 / fps)
    log.info("encoders (ms a %dx%d frame): %s; %s", width, height,
             ", ".join(f"{a} {p} {t:.1f}" for (a, p), t in ms.items()), why)
    return Codec(bundle, threads=threads, encoder=chosen[1], analysis=chosen[0])


def choose_encoder(ms: dict, frame_ms: float) -> tuple[tuple[str, str], str]:
    """((analysis, precision), reason) from encode times per candidate: the faster precision, and the
    full analysis unless it needs more than ``FULL_ANALYSIS_SHARE`` of the frame period while a fast one
    is among the candidates."""
    fast = [c for c in ms if c[0] == "fast"]
    best = min([c for c in ms if c[0] == "full"] or fast, key=ms.get)
    budget = FULL_ANALYSIS_SHARE * frame_ms
    if best[0] == "full" and fast and ms[best] > budget:
        best = min(fast, key=ms.get)
        return best, (f"the full analysis needs more than {budget:.1f} ms (half the frame period): "
                      f"using fast {best[1]}")
    return best, f"using {best[0]} {best[1]}"


def time_encoders(bundle, threads: int, width: int, height: int, candidates, runs: int = 5) -> dict:
    """Milliseconds a whole encode of a frame of the camera's size takes, per (analysis, precision)
    candidate: the fastest of each candidate's network runs, timed in turns (other processes only ever
    add time, and at start-up they are busy too), plus the median of the rest of an encode
    (hyper-synthesis, context, range coding), which is the same for every candidate and timed apart so
    that its noise does not decide between them.

    The int8 models are meant for ARM boards, but XNNPACK's int8 kernels on an x86 CPU without int8
    dot products are slower than its float ones (32 against 26 ms a 640x480 frame on one thread of
    the 2-core machine these figures come from), and the float twin writes the same bitstream, at
    1.9 % fewer bits for the same PSNR (BD-rate on Kodak)."""
    from edgecodec.codec import Codec, pad_image
    from edgecodec.testscene import TestScene

    frame = TestScene(width, height).render(0)
    padded = pad_image(frame)
    quality = bundle.qualities[len(bundle.qualities) // 2]
    codecs = {c: Codec(bundle, threads=threads, encoder=c[1], analysis=c[0]) for c in candidates}
    times: dict = {c: [] for c in codecs}
    first = next(iter(codecs.values()))
    encodes = []
    for i in range(runs + 1):
        for c, codec in codecs.items():  # in turns, so all see the same machine
            t0 = time.perf_counter()
            codec.analyse(padded, quality)
            if i:  # the first run of each allocates
                times[c].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        first.encode(frame, quality)
        if i:
            encodes.append(time.perf_counter() - t0)
    rest_ms = max(0.0, 1000 * (statistics.median(encodes) - statistics.median(times[candidates[0]])))
    return {c: 1000 * min(t) + rest_ms for c, t in times.items()}


@dataclass(frozen=True)
class Encoded:
    sequence: int
    timestamp_us: int
    quality: int
    packet: bytes
    key: bool = True  # a key frame (decodes on its own); False: a delta frame, needs the frame before it


class Tap(Protocol):
    """A consumer of every encoded frame besides the outbox (the serial bridge)."""

    def offer(self, item: Encoded) -> None:
        """Take or ignore ``item``; called from the encoder's thread, must not block."""


class IntraOnly:
    """``StreamEncoder``'s interface for a codec without stream support (a stand-in codec in tests):
    every frame a key frame."""

    def __init__(self, codec):
        self.codec = codec
        self.keys = 0
        self.deltas = 0
        self.last_coded_share = 1.0

    def request_key(self) -> None:
        pass

    def encode(self, image, quality: int, sequence: int, timestamp_us: int = 0) -> bytes:
        self.keys += 1
        return self.codec.encode(image, quality, kind=Kind.FRAME, sequence=sequence, timestamp_us=timestamp_us)


def stream_encoder(codec, key_interval_s: float = 2.0, intra: bool = False):
    """The edge's frame coder: a ``StreamEncoder`` (key frames and delta frames, or with ``intra`` only
    key frames), or ``IntraOnly`` for a codec that cannot code streams."""
    from edgecodec.codec import Codec
    from edgecodec.temporal import StreamEncoder

    if not isinstance(codec, Codec):
        return IntraOnly(codec)
    return StreamEncoder(codec, key_interval_s=key_interval_s, intra=intra)


class EncodeStage(Stage):
    """Codes the newest captured frame. In stream mode most frames are delta frames against the frame
    encoded before; ``request_key`` (any thread) makes the next one a key frame, for a receiver that
    lost frames (the spool overflowed, the link was down)."""

    name = "encode"

    def __init__(self, codec, slot: LatestSlot, outbox: Optional[queue.Queue], rate, key_interval_s: float = 2.0,
                 intra: bool = False):
        super().__init__()
        self.codec = codec
        self.slot = slot
        self.outbox = outbox  # None: no sender, the taps take every frame
        self.taps: list[Tap] = []
        self.rate = rate  # RateController or FixedQuality; replaced only through set_rate
        self.stream = stream_encoder(codec, key_interval_s, intra)
        self.intra = intra or isinstance(self.stream, IntraOnly)
        self.key_interval_s = None if self.intra else key_interval_s  # for rate control's groups
        self._key_interval_us = int(key_interval_s * 1e6)
        self._last_key_us: Optional[int] = None
        self.encoded = 0
        self.skipped = 0  # frames the rate controller left out
        self.bytes = 0
        self.key_bytes = 0  # of ``bytes``, those of key frames (the rest: delta frames)
        self.encode_ms = 0.0  # running average
        self.key_requests = 0
        self._key_wanted = threading.Event()

    @property
    def keys(self) -> int:
        return self.stream.keys

    @property
    def deltas(self) -> int:
        return self.stream.deltas

    def add_tap(self, tap: Tap) -> None:
        """Offer every encoded frame to ``tap`` as well (before ``start``)."""
        self.taps.append(tap)

    def set_rate(self, rate) -> None:
        """Replace the rate control (a RateController or FixedQuality) from the next frame on; thread-safe,
        since ``run`` reads ``rate`` once per frame and uses that one for the frame's choice and its size."""
        self.rate = rate

    def request_key(self, why: str = "") -> None:
        """Make the next encoded frame a key frame (thread-safe)."""
        if not self._key_wanted.is_set():
            self.key_requests += 1
            log.debug("key frame requested%s", f": {why}" if why else "")
        self._key_wanted.set()

    def _key_due(self, timestamp_us: int) -> Optional[bool]:
        """Whether the next frame will be a key frame (the stream encoder's rule, for rate control, which
        changes quality only there), None when every frame is one."""
        if self.intra:
            return None
        last = self._last_key_us
        return (last is None or self._key_wanted.is_set() or timestamp_us < last
                or timestamp_us - last >= self._key_interval_us)

    def run(self) -> None:
        while True:
            frame = self.slot.get(timeout=0.2)
            self.beat()
            if frame is None:
                if self.stopping:
                    return  # the slot is empty: everything captured was handled
                continue
            rate = self.rate  # read once: set_rate (the MCU's commands) may replace it between frames
            quality = rate.choose(time.monotonic(), key=self._key_due(frame.timestamp_us))
            if quality is None:
                self.skipped += 1
                continue
            if self._key_wanted.is_set():
                self._key_wanted.clear()
                self.stream.request_key()
            keys_before = self.stream.keys
            t0 = time.perf_counter()
            packet = self.stream.encode(frame.image, quality, sequence=frame.sequence,
                                        timestamp_us=frame.timestamp_us)
            ms = (time.perf_counter() - t0) * 1000
            key = self.stream.keys > keys_before
            if key:
                self._last_key_us = frame.timestamp_us
                self.key_bytes += len(packet)
            self.encode_ms = ms if not self.encoded else self.encode_ms + 0.1 * (ms - self.encode_ms)
            observe = getattr(rate, "observe_frame", None)
            if observe is not None:
                observe(quality, len(packet), time.monotonic(), key)
            else:
                rate.observe(quality, len(packet), time.monotonic())
            self.encoded += 1
            self.bytes += len(packet)
            item = Encoded(frame.sequence, frame.timestamp_us, quality, packet, key)
            for tap in self.taps:
                tap.offer(item)
            if self.outbox is None:
                continue
            while True:
                try:
                    self.outbox.put(item, timeout=0.2)
                    break
                except queue.Full:
                    self.beat()  # waiting on a slow network is not a stall of the encoder
