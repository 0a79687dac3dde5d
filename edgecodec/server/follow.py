"""Following one camera's stream for a viewer that shows only some frames (the probe, the live view).

A delta frame decodes only on top of the frame before it, so a viewer cannot skip frames as it could when
every frame stood alone. It can still skip the expensive part: ``StreamFollower.advance`` decodes the
latents of every frame given, in order (entropy decoding: cheap), and returns those of the newest one
only, for the caller to synthesize. Frames before the last key frame of a batch are not needed at all,
so an intra stream costs what it did before: one decode of the newest frame.

After joining mid-stream, or a gap, delta frames cannot be decoded: the follower waits for the next key
frame, counts the frames it had to pass over and logs once per wait; it never returns latents built on
the wrong reference.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from edgecodec.bitstream import Header, Kind
from edgecodec.errors import EdgecodecError, MissingReferenceError

log = logging.getLogger(__name__)


class StreamFollower:
    def __init__(self, codec, camera_id: str, who: str = "viewer"):
        from edgecodec.temporal import StreamDecoder

        self.decoder = StreamDecoder(codec)
        self.camera_id = camera_id
        self.who = who
        self.latents = 0  # frames whose latents were decoded
        self.passed_over = 0  # frames not needed: a later key frame came in the same batch
        self.waiting_frames = 0  # delta frames that could not be decoded: no reference (waiting for a key)
        self.waits = 0  # times it had to wait for a key frame (joined mid-stream, a gap)
        self.errors = 0  # frames that failed otherwise (corrupt, another model)
        self._waiting_logged = False

    @property
    def waiting(self) -> bool:
        return self.decoder.waiting

    def reset(self) -> None:
        """Forget the stream state (frames stopped being followed); the next frames start from a key frame."""
        self.decoder.reset()

    def _duplicate(self, header: Header) -> bool:
        last = self.decoder.last_sequence
        return last is not None and (header.sequence == last or header.kind == Kind.DELTA and header.sequence < last)

    def advance(self, frames: Sequence[tuple[Header, bytes]]) -> Optional[tuple[Header, np.ndarray]]:
        """Decode the latents of ``frames`` (in stream order); return (header, y) of the newest frame that
        decoded, or None when none did (waiting for a key frame, or only errors)."""
        start = max((i for i, (h, _) in enumerate(frames) if h.kind != Kind.DELTA), default=0)
        self.passed_over += start
        shown = None
        for header, packet in frames[start:]:
            if self._duplicate(header):
                continue
            try:
                shown = self.decoder.decode_latents(packet)
            except MissingReferenceError as exc:
                self.waiting_frames += 1
                if not self._waiting_logged:
                    self._waiting_logged = True
                    self.waits += 1
                    log.info("%s of %s: waiting for a key frame (%s)", self.who, self.camera_id, exc)
                continue
            except EdgecodecError as exc:
                self.errors += 1
                log.warning("%s could not decode %s frame %d: %s", self.who, self.camera_id, header.sequence, exc)
                continue
            self.latents += 1
            if self._waiting_logged:
                self._waiting_logged = False
                log.info("%s of %s: key frame %d, decoding again", self.who, self.camera_id, header.sequence)
        return shown
