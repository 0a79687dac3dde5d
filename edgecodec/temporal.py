"""Stream mode: after a key frame, each frame is coded against the latents the decoder already holds.

A fixed camera sees the same background frame after frame; re-sending it is what made every-frame-a-still
streams cost more than MJPEG. A delta frame (``Kind.DELTA``) sends, per latent position (one 16x16 block
of the padded frame), one flag: keep the reference frame's latents there, or code new ones. Coded
positions are coded as in a key frame, with the hyper-synthesis' tables and means and the checkerboard
context; the hyper-latents of the 64x64 areas that hold coded positions are sent again first, so their
tables follow the new content. Encoder and decoder hold the same integer state (latents, hyper-latents
and the last frame's flags), so they choose the same tables on every CPU, as for stills.

Streams of a delta frame: 0 the flags (binary, with four tables chosen by whether the position and its
neighbours were coded in the previous frame), 1 the hyper-latents of the flagged 64x64 areas, then y at
the coded positions in the key frame's passes (anchors, then the rest with the context).

Which blocks to code is the encoder's decision and is not in the format. This one codes a block when its
pixels differ from the pixels it last coded there by a mean squared error above ``skip_threshold`` times
the model's own distortion at that quality (from the Kodak figures in its manifest), and its latents
changed at all. Sensor noise on a static background stays below that, so it is not re-sent; slow drifts
(light) are re-sent once they pass it. A skipped block's error is its key-frame error plus at most that
drift, so with the default 0.5 the stream's PSNR stays within 10 log10(1.5) = 1.8 dB of intra coding in
the worst case, and far closer where the background is still. When no block of a frame passed the
threshold, the frame is sent as an all-kept delta frame without running the analysis network at all: on
a still scene most frames cost the camera a pixel difference and a few bytes.

Key frames come at the start, on ``request_key`` (a decoder that joined or lost a packet), when the
quality or the frame size changes, and every ``key_interval_s`` of capture time: a viewer who joins sees a
picture within that time.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Optional

import cv2
import numpy as np

from edgecodec import bitstream, entropy
from edgecodec.bitstream import Header, Kind
from edgecodec.codec import Codec, pad_image, to_rgb
from edgecodec.errors import BitstreamError, EdgecodecError, MissingReferenceError
from edgecodec.models import contract
from edgecodec.models.entropy_model import Z_SPAN

KEY_INTERVAL_S = 2.0
SKIP_THRESHOLD = 0.5
MAX_REFERENCE = 0xFFFF  # the header's u16: a longer gap needs a key frame
# P(a position is coded) by context: 2 x (coded in the previous frame) + (a 4-neighbour was). A key frame
# leaves no flags, so the frame after it uses context 0 everywhere.
FLAG_PROBABILITIES = (0.02, 0.25, 0.5, 0.8)
FALLBACK_PSNR = 30.0  # a model folder without Kodak figures: the distortion the threshold scales


@lru_cache(maxsize=1)
def flag_tables() -> entropy.CdfTables:
    pmfs = [[1.0 - p, p] for p in FLAG_PROBABILITIES]
    return entropy.CdfTables.from_pmfs(pmfs, [0] * len(pmfs), [2] * len(pmfs))


def flag_contexts(previous: np.ndarray) -> np.ndarray:
    """The table index of each position's flag, (H, W) int32, from the previous frame's flags."""
    p = np.pad(previous, 1)
    neighbour = p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return (2 * previous + neighbour).astype(np.int32)


def z_areas(coded: np.ndarray, z_shape) -> np.ndarray:
    """(Hz, Wz) bool: the hyper-latent positions whose 4x4 latent area holds a coded position."""
    hz, wz = z_shape[:2]
    padded = np.zeros((hz * Z_SPAN, wz * Z_SPAN), bool)
    padded[:coded.shape[0], :coded.shape[1]] = coded
    return padded.reshape(hz, Z_SPAN, wz, Z_SPAN).any(axis=(1, 3))


@dataclasses.dataclass
class Reference:
    """What encoder and decoder of one stream both hold after a frame: its integer state."""

    sequence: int
    quality: int
    width: int
    height: int
    channels: int
    y: np.ndarray  # (H/16, W/16, M) int32
    z: np.ndarray  # (H/64, W/64, Mz) int32
    coded: np.ndarray  # (H/16, W/16) bool: the positions the frame coded (none for a key frame)


def _subset(passes, coded: np.ndarray) -> list[np.ndarray]:
    """Each pass' positions, restricted to the coded ones."""
    flat = coded.ravel()
    return [rows[flat[rows]] for rows in passes]


class StreamEncoder:
    """Codes one stream's frames in order: key frames and delta frames against the previous one."""

    def __init__(self, codec: Codec, key_interval_s: float = KEY_INTERVAL_S,
                 skip_threshold: float = SKIP_THRESHOLD, intra: bool = False):
        if not key_interval_s > 0:
            raise EdgecodecError(f"key_interval_s must be positive, got {key_interval_s}")
        if not skip_threshold >= 0:
            raise EdgecodecError(f"skip_threshold must be >= 0, got {skip_threshold}")
        self.codec = codec
        self.key_interval_us = int(key_interval_s * 1e6)
        self.skip_threshold = skip_threshold
        self.intra = intra
        self._ref: Optional[Reference] = None
        self._source: Optional[np.ndarray] = None  # the padded pixels each block was last coded from
        self._key_time_us = 0
        self._key_requested = False
        self.keys = 0
        self.deltas = 0
        self.last_coded_share = 1.0  # of the last frame's positions, the share it coded
        self.analyses_skipped = 0  # delta frames in which no block changed: sent without running the network

    def request_key(self) -> None:
        """Make the next frame a key frame (a viewer joined, a packet was lost, the stream restarts)."""
        self._key_requested = True

    def skip_mse(self, quality: int) -> float:
        """The block MSE (0..255 pixels) up to which a block keeps its reference latents."""
        kodak = {int(r["quality"]): float(r["psnr"]) for r in self.codec.bundle.manifest.get("kodak", [])}
        psnr = kodak.get(quality, FALLBACK_PSNR)
        return self.skip_threshold * 255.0 ** 2 * 10 ** (-psnr / 10)

    def _needs_key(self, quality, rgb, sequence, timestamp_us) -> bool:
        ref = self._ref
        return (self.intra or ref is None or self._key_requested or quality != ref.quality
                or rgb.shape[:2] != (ref.height, ref.width) or not 0 < sequence - ref.sequence <= MAX_REFERENCE
                or timestamp_us - self._key_time_us >= self.key_interval_us or timestamp_us < self._key_time_us)

    def encode(self, image: np.ndarray, quality: int, sequence: int, timestamp_us: int = 0) -> bytes:
        """The packet of the next frame of the stream: a key frame or a delta frame."""
        codec = self.codec
        quality = codec._check_quality(quality)
        rgb, channels = to_rgb(image)
        padded = pad_image(rgb)
        h, w = rgb.shape[:2]
        if self._needs_key(quality, rgb, sequence, timestamp_us):
            y, z = codec.analyse(padded, quality)
            packet = self._key(y, z, quality, h, w, channels, sequence, timestamp_us)
            self._source = padded.copy()
            self._key_time_us, self._key_requested = timestamp_us, False
            self.keys += 1
            self.last_coded_share = 1.0
            return packet
        ref = self._ref
        a = contract.ALIGN
        diff = cv2.absdiff(padded, self._source)
        # Mean squared error per 16x16 block: INTER_AREA at an exact 1/16 scale is the block mean.
        err = cv2.resize(cv2.multiply(diff, diff, dtype=cv2.CV_32F), (padded.shape[1] // a, padded.shape[0] // a),
                         interpolation=cv2.INTER_AREA).mean(axis=2)
        changed = err > self.skip_mse(quality)
        if changed.any():
            y, z = codec.analyse(padded, quality)
            coded = changed & (y != ref.y).any(axis=-1)
        else:  # nothing moved: no block can be coded, so the analysis (most of an encode) is not needed
            y, z, coded = ref.y, ref.z, changed
            self.analyses_skipped += 1
        streams, y_mix, z_mix = self._delta_streams(y, z, coded, quality)
        header = Header(kind=Kind.DELTA, model_id=codec.model_id, width=w, height=h, channels=channels,
                        quality=quality, sequence=sequence, timestamp_us=timestamp_us,
                        reference=sequence - ref.sequence)
        packet = bitstream.pack(header, streams)
        block = np.repeat(np.repeat(coded, a, axis=0), a, axis=1)
        self._source[block] = padded[block]
        self._ref = Reference(sequence, quality, w, h, channels, y_mix, z_mix, coded)
        self.deltas += 1
        self.last_coded_share = float(coded.mean())
        return packet

    def _key(self, y, z, quality, h, w, channels, sequence, timestamp_us) -> bytes:
        header = Header(kind=Kind.FRAME, model_id=self.codec.model_id, width=w, height=h, channels=channels,
                        quality=quality, sequence=sequence, timestamp_us=timestamp_us)
        self._ref = Reference(sequence, quality, w, h, channels, y, z, np.zeros(y.shape[:2], bool))
        return self.codec.pack_latents(header, y, z)

    def _delta_streams(self, y, z, coded, quality):
        model, ref = self.codec.entropy_model, self._ref
        areas = z_areas(coded, z.shape)
        z_mix = np.where(areas[..., None], z, ref.z)
        y_mix = np.where(coded[..., None], y, ref.y)
        streams = [entropy.encode(coded.astype(np.int32), flag_contexts(ref.coded), flag_tables()),
                   model.encode_z(z, areas)]
        coder = model.frame(z_mix, y.shape, quality)
        streams += [coder.encode(k, y_mix, rows) for k, rows in enumerate(_subset(coder.passes, coded))]
        return streams, y_mix, z_mix


class StreamDecoder:
    """Decodes one stream's packets in order. A delta frame whose reference this decoder does not hold
    (it joined mid-stream, a packet was lost or came out of order) raises ``MissingReferenceError`` and
    leaves the decoder waiting for the next key frame: it never shows a frame built on the wrong one."""

    def __init__(self, codec: Codec):
        self.codec = codec
        self._ref: Optional[Reference] = None

    @property
    def waiting(self) -> bool:
        """True until a key frame has been decoded (and again after a frame failed)."""
        return self._ref is None

    @property
    def last_sequence(self) -> Optional[int]:
        return None if self._ref is None else self._ref.sequence

    def reset(self) -> None:
        self._ref = None

    def decode(self, packet: bytes) -> np.ndarray:
        """The image of the next packet of the stream."""
        header, y = self.decode_latents(packet)
        return self.codec.synthesize(header, y)

    def decode_latents(self, packet: bytes) -> tuple[Header, np.ndarray]:
        """(header, integer latents) of the next packet, updating the stream state: the cheap part of a
        decode, for a viewer that synthesizes only the frames it shows (``Codec.synthesize``)."""
        codec = self.codec
        try:
            header, streams = bitstream.unpack(packet, expect_model_id=codec.model_id)
            if header.kind != Kind.DELTA:
                y, z = codec.unpack_latents(header, streams)
                self._ref = Reference(header.sequence, header.quality, header.width, header.height,
                                      header.channels, y, z, np.zeros(y.shape[:2], bool))
                return header, y
            self._check_reference(header)
            y, z, coded = self._delta(header, streams)
        except BaseException:
            self._ref = None  # whatever failed, the state is no longer the encoder's
            raise
        ref = self._ref
        self._ref = Reference(header.sequence, ref.quality, ref.width, ref.height, ref.channels, y, z, coded)
        return header, y

    def _check_reference(self, header: Header) -> None:
        ref, want = self._ref, header.reference_sequence
        if ref is None:
            raise MissingReferenceError(f"frame {header.sequence} is a delta frame and no key frame has been "
                                        "decoded yet: waiting for the next key frame")
        if ref.sequence != want:
            raise MissingReferenceError(f"frame {header.sequence} is coded against frame {want}, but the last "
                                        f"frame decoded is {ref.sequence}: waiting for the next key frame")
        if (header.quality, header.width, header.height, header.channels) != (ref.quality, ref.width, ref.height,
                                                                            ref.channels):
            raise BitstreamError(f"delta frame {header.sequence} changes the quality or frame size of its "
                                 "reference")

    def _delta(self, header: Header, streams: list[bytes]):
        model, ref = self.codec.entropy_model, self._ref
        if len(streams) != 2 + model.n_passes:
            raise BitstreamError(f"expected {2 + model.n_passes} coded streams in a delta frame, found {len(streams)}")
        coded = entropy.decode(streams[0], flag_contexts(ref.coded), flag_tables()).astype(bool)
        z = model.decode_z(streams[1], ref.z.shape, into=ref.z.copy(), where=z_areas(coded, ref.z.shape))
        y = ref.y.copy()
        coder = model.frame(z, y.shape, header.quality)
        for k, (rows, stream) in enumerate(zip(_subset(coder.passes, coded), streams[2:])):
            coder.decode(k, stream, y, rows)
        return y, z, coded
