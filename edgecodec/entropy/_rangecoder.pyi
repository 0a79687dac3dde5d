"""Type stub for the C range coder; the documented API is edgecodec.entropy."""
from typing_extensions import Buffer

FORMAT_VERSION: int
PRECISION: int
ESCAPE_LENGTH_BITS: int

def encode(symbols: Buffer, indexes: Buffer, cdf: Buffer, lengths: Buffer, offsets: Buffer, /) -> bytes:
    """Range-code int32 ``symbols`` with the tables named by ``indexes``."""

def decode(
    data: Buffer, indexes: Buffer, cdf: Buffer, lengths: Buffer, offsets: Buffer, out: Buffer, /
) -> None:
    """Decode ``len(indexes)`` symbols from ``data`` into the int32 buffer ``out``."""
