"""Encode and decode one image: the data path frame -> analysis -> quantize -> entropy code -> packet, and back.

The encoder's int8 model emits integer latents y (1/16 resolution) and hyper-latents z (1/64). z is coded
with one fixed table per channel; z also drives the integer hyper-synthesis, which names the Gaussian table
for every element of y (and its mean). The packet holds the streams inside the container of ``bitstream``:
z then y, or, for a model with a checkerboard context (``edgecodec.models.context``), z, then y's anchor
positions, then the other positions, whose tables and means are refined from the decoded anchors.
"""
from __future__ import annotations

import cv2
import numpy as np

from edgecodec import bitstream
from edgecodec.bitstream import Header, Kind
from edgecodec.errors import BitstreamError, EdgecodecError, MissingReferenceError, ModelError
from edgecodec.models import ModelBundle, contract

MAX_SIDE = 65535


def to_rgb(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (H x W x 3 uint8 RGB, original channel count) for gray, RGB or RGBA uint8 input.

    Gray is coded as RGB with equal channels and returned as gray; alpha is not coded (the codec is for
    camera frames) and is restored as fully opaque, which the header's channel count records.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise EdgecodecError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise EdgecodecError(f"unsupported image shape {image.shape}: need H x W with 1, 3 or 4 channels")
    h, w, c = image.shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise EdgecodecError(f"image size {w}x{h} outside 1..{MAX_SIDE}")
    if c == 1:
        return np.repeat(image, 3, axis=2), 1
    if c == 4:
        return np.ascontiguousarray(image[:, :, :3]), 4
    return np.ascontiguousarray(image), 3


def from_rgb(rgb: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        gray = np.round(rgb.astype(np.float32).mean(axis=2))
        return gray.astype(np.uint8)
    if channels == 4:
        alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
        return np.concatenate([rgb, alpha], axis=2)
    return rgb


def pad_image(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    ph = -h % contract.ALIGN
    pw = -w % contract.ALIGN
    if ph or pw:
        rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return rgb


class Codec:
    """The codec bound to one model folder; thread-safe for use from one pipeline stage at a time."""

    def __init__(self, bundle: ModelBundle, threads: int = 2, encoder: str = "int8", decoder: str = "full",
                 analysis: str = "full", delegate: str | None = None):
        if encoder not in contract.PRECISIONS:
            raise EdgecodecError(f"encoder must be 'int8' or 'float', not {encoder!r}")
        if analysis not in contract.ANALYSES:
            raise EdgecodecError(f"analysis must be 'full' or 'fast', not {analysis!r}")
        if analysis == "fast" and not bundle.has_fast_encoder:
            raise ModelError(f"the model in {bundle.dir} has no fast encoder")
        if decoder == "auto":
            decoder = "live" if bundle.has_live_decoder else "full"
        if decoder not in contract.DECODERS:
            raise EdgecodecError(f"decoder must be auto, {' or '.join(contract.DECODERS)}, not {decoder!r}")
        if decoder == "live" and not bundle.has_live_decoder:
            raise ModelError(f"the model in {bundle.dir} has no live decoder")
        self.bundle = bundle
        self.threads = threads
        self.encoder_kind = encoder
        self.analysis = analysis
        self.decoder_kind = decoder
        self.entropy_model = bundle.entropy_model(threads)
        self.delegate = delegate  # a TFLite delegate library for the int8 encoder (e.g. libedgetpu.so.1)

    @classmethod
    def load(cls, model_dir=None, threads: int = 2, encoder: str = "int8", decoder: str = "full",
             analysis: str = "full", delegate: str | None = None) -> "Codec":
        """``decoder="live"`` picks the model's faster synthesis (same bitstream, lower PSNR), ``"auto"``
        that one where the folder has it, else the full one. ``analysis="fast"`` picks its faster
        analysis (streams of the same model, at a lower PSNR for their bits)."""
        return cls(ModelBundle.load(model_dir, hyper_threads=threads), threads=threads, encoder=encoder,
                   decoder=decoder, analysis=analysis, delegate=delegate)

    @property
    def model_id(self) -> bytes:
        return self.bundle.model_id

    @property
    def qualities(self) -> list[int]:
        return self.bundle.qualities

    def _check_quality(self, quality: int) -> int:
        if quality not in self.qualities:
            raise EdgecodecError(f"quality {quality} not in {self.qualities[0]}..{self.qualities[-1]}")
        return int(quality)

    def analyse(self, rgb_padded: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer latents (y, z) of a padded RGB image, from the chosen analysis' int8 encoder or its
        float twin."""
        x = rgb_padded[None]
        model = self.bundle.encoder(quality, self.threads, self.encoder_kind, self.analysis,
                                    size=rgb_padded.shape[:2], delegate=self.delegate)
        outs = model.run(x if self.encoder_kind == "int8" else x.astype(np.float32))
        outs = sorted(outs, key=lambda a: -a.shape[1])
        y, z = outs[0][0], outs[1][0]
        if self.encoder_kind == "float":
            gain = self.bundle.gains[0][quality]
            y = np.clip(np.round(y * gain), -128, 127)
            z = np.clip(np.round(z), -128, 127)
        return np.asarray(np.round(y), np.int32), np.asarray(np.round(z), np.int32)

    def encode(self, image: np.ndarray, quality: int, *, kind: Kind = Kind.IMAGE,
               sequence: int = 0, timestamp_us: int = 0) -> bytes:
        """Compress an image (H x W gray, RGB or RGBA, uint8) into one container packet."""
        quality = self._check_quality(quality)
        rgb, channels = to_rgb(image)
        h, w = rgb.shape[:2]
        y, z = self.analyse(pad_image(rgb), quality)
        header = Header(kind=kind, model_id=self.model_id, width=w, height=h, channels=channels,
                        quality=quality, sequence=sequence, timestamp_us=timestamp_us)
        return self.pack_latents(header, y, z)

    def pack_latents(self, header: Header, y: np.ndarray, z: np.ndarray) -> bytes:
        """The self-contained packet of integer latents y and hyper-latents z (an image or a key frame)."""
        model = self.entropy_model
        coder = model.frame(z, y.shape, header.quality)
        streams = [model.encode_z(z)] + [coder.encode(k, y) for k in range(model.n_passes)]
        return bitstream.pack(header, streams)

    def decode(self, packet: bytes) -> np.ndarray:
        """Reconstruct the image of a packet written by this model (gray, RGB or RGBA as encoded)."""
        header, streams = bitstream.unpack(packet, expect_model_id=self.model_id)
        if header.kind == Kind.DELTA:
            raise MissingReferenceError(
                f"frame {header.sequence} is a delta frame coded against frame {header.reference_sequence}: "
                "decode its stream in order from a key frame (edgecodec.temporal.StreamDecoder)")
        return self.decode_parts(header, streams)

    def decode_parts(self, header: Header, streams: list[bytes]) -> np.ndarray:
        return self.synthesize(header, self.decode_latents(header, streams))

    def synthesize(self, header: Header, y: np.ndarray) -> np.ndarray:
        """The image of integer latents y (H/16, W/16, M), cropped and in the channels the header names."""
        y_hat = y.astype(np.float32) * self.bundle.gains[1][header.quality]
        (x,) = self.bundle.decoder(self.decoder_kind, self.threads).run(y_hat[None])
        # Round half to even and saturate to 0..255 (NaN to 0) in one pass, as np.clip(np.round(x), 0, 255)
        # would in three.
        rgb = cv2.add(x[0, :header.height, :header.width], 0.0, dtype=cv2.CV_8U)
        return from_rgb(rgb, header.channels)

    def decode_latents(self, header: Header, streams: list[bytes]) -> np.ndarray:
        """The integer latents y (H/16, W/16, M) of a packet's coded streams: everything up to synthesis."""
        return self.unpack_latents(header, streams)[0]

    def unpack_latents(self, header: Header, streams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(y, z): the integer latents and hyper-latents of a self-contained packet's coded streams."""
        model = self.entropy_model
        if len(streams) != 1 + model.n_passes:
            raise BitstreamError(f"expected {1 + model.n_passes} coded streams, found {len(streams)}")
        if header.quality not in self.qualities:
            raise BitstreamError(f"quality {header.quality} unknown to this model")
        yh = -(-header.height // contract.ALIGN)
        yw = -(-header.width // contract.ALIGN)
        z = model.decode_z(streams[0], model.z_shape(yh, yw))
        y = np.zeros((yh, yw, model.y_channels), np.int32)
        coder = model.frame(z, y.shape, header.quality)
        for k, stream in enumerate(streams[1:]):
            coder.decode(k, stream, y)
        return y, z
