"""The latents' entropy model as one object: which streams a frame has, and the tables each value is coded with.

A frame's coded streams are the hyper-latents z, each channel with its own fixed table, then the latents y
in one pass (a hyperprior model) or two (with the checkerboard context: the anchors, then the other
positions, whose tables and means the context refines from the decoded anchors). The codec calls this
object once per stream; how the tables and means come about (the integer hyper-synthesis, the context's
integer corrections, see ``hyper`` and ``context``) stays in here. A delta frame codes the same passes over
a subset of the positions (``rows``), with the same tables.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edgecodec import entropy
from edgecodec.models.context import CheckerboardContext, passes
from edgecodec.models.hyper import HyperSynthesis

Z_SPAN = 4  # latent positions per hyper-latent position, each way (two stride-2 layers)


class EntropyModel:
    def __init__(self, hyper: HyperSynthesis, context: Optional[CheckerboardContext], cdf_y: entropy.CdfTables,
                 cdf_z: entropy.CdfTables, threads: int = 1):
        self.hyper, self.context = hyper, context
        self.cdf_y, self.cdf_z = cdf_y, cdf_z
        self.threads = threads
        self.y_channels = hyper.latent_channels
        self.z_channels = hyper.hyper_channels

    @property
    def n_passes(self) -> int:
        return 1 if self.context is None else 2

    def z_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of z for latents of (height, width) positions."""
        return -(-height // Z_SPAN), -(-width // Z_SPAN), self.z_channels

    def passes(self, height: int, width: int) -> list[np.ndarray]:
        """The flat latent positions (int32, raster order) each pass codes."""
        if self.context is None:
            return [np.arange(height * width, dtype=np.int32)]
        return list(passes(height, width))

    def z_indexes(self, z_shape) -> np.ndarray:
        """Each hyper-latent's table: its channel."""
        return np.broadcast_to(np.arange(z_shape[-1], dtype=np.int32), z_shape)

    def encode_z(self, z: np.ndarray, where: Optional[np.ndarray] = None) -> bytes:
        """z's stream (or that of z at the (Hz, Wz) positions ``where`` is True)."""
        index = self.z_indexes(z.shape)
        if where is None:
            return entropy.encode(z.ravel(), np.ascontiguousarray(index).ravel(), self.cdf_z)
        return entropy.encode(z[where], index[where], self.cdf_z)

    def decode_z(self, stream: bytes, z_shape, into: Optional[np.ndarray] = None,
                 where: Optional[np.ndarray] = None) -> np.ndarray:
        """z of ``z_shape`` from its stream; or, with ``into`` and ``where``, its values at those positions."""
        index = self.z_indexes(z_shape)
        if into is None:
            return entropy.decode(stream, np.ascontiguousarray(index).ravel(), self.cdf_z).reshape(z_shape)
        into[where] = entropy.decode(stream, index[where], self.cdf_z)
        return into

    def frame(self, z: np.ndarray, y_shape, quality: int) -> "LatentCoder":
        """The coder of one frame's y, given its z (the hyper-synthesis runs once, here)."""
        return LatentCoder(self, z, y_shape, quality)


class LatentCoder:
    """One frame's latents, pass by pass: ``encode`` on the encoder, ``decode`` (in the same order) on the
    decoder. Both read y's anchors for the second pass, so both must hold the same y there."""

    def __init__(self, model: EntropyModel, z: np.ndarray, y_shape, quality: int):
        self.model, self.quality = model, quality
        self.height, self.width = y_shape[:2]
        self.sums = model.hyper.sums(z, (self.height, self.width))
        self.passes = model.passes(self.height, self.width)

    def tables(self, k: int, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table index, integer mean), each (N, M), of the latents at flat positions ``rows`` in pass k."""
        m = self.model
        context = m.context.terms(y, self.quality, rows, m.threads) if k > 0 else None
        return m.hyper.finish_at(self.sums, self.quality, rows, context)

    def encode(self, k: int, y: np.ndarray, rows: Optional[np.ndarray] = None) -> bytes:
        """Pass k's stream: y minus its mean at the pass' positions (or at ``rows``, a subset of them)."""
        rows = self.passes[k] if rows is None else rows
        index, mean = self.tables(k, y, rows)
        return entropy.encode(y.reshape(-1, y.shape[-1])[rows] - mean, index, self.model.cdf_y)

    def decode(self, k: int, stream: bytes, y: np.ndarray, rows: Optional[np.ndarray] = None) -> None:
        """Fill y (H, W, M) at pass k's positions (or ``rows``) from its stream. The int8 encoder never
        writes latents outside int8; a forged stream can, and would overflow the synthesis to inf/NaN:
        clamping keeps any decodable stream's image finite."""
        rows = self.passes[k] if rows is None else rows
        index, mean = self.tables(k, y, rows)
        y.reshape(-1, y.shape[-1])[rows] = np.clip(entropy.decode(stream, index, self.model.cdf_y) + mean,
                                                   -128, 127)
