"""Hand-made frame packets and recordings for tests that need no model."""
from __future__ import annotations

import os

from edgecodec import bitstream
from edgecodec.bitstream import Header, Kind
from edgecodec.recording import RecordingWriter

MODEL = b"testmdl!"
T0 = 1_700_000_000_000_000  # a wall-clock timestamp in microseconds


def fake_packet(sequence: int, timestamp_us: int | None = None, size: int = 200, model_id: bytes = MODEL) -> bytes:
    """A valid container packet whose streams are random bytes (not decodable by a model)."""
    header = Header(kind=Kind.FRAME, model_id=model_id, width=64, height=48, channels=3, quality=1,
                    sequence=sequence, timestamp_us=T0 + sequence * 100_000 if timestamp_us is None else timestamp_us)
    return bitstream.pack(header, [os.urandom(size // 2), os.urandom(size - size // 2)])


def write_recording(path, packets, camera_id: str = "cam-1", index_every: int = 8, close: bool | None = True):
    """close=True: a finished file; False: as if the writer were killed (descriptor and lock gone, no
    final index); None: the writer stays open, like a running server's."""
    writer = RecordingWriter(path, camera_id, index_every=index_every)
    for p in packets:
        writer.append(p)
    if close:
        writer.close()
    elif close is False:
        os.close(writer._fd)
        writer._fd = -1
    return writer
