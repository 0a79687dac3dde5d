"""An audit trail of stored frames: one JSON line per frame (camera, sequence, size, timestamps).

Cheap enough to leave on in production; the stream tests and benchmarks read it to check that
every frame arrived once and in order.
"""
from __future__ import annotations

import json
import threading
import time

from edgecodec.bitstream import Header


class FrameLog:
    def __init__(self, path: str):
        self._file = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def __call__(self, camera_id: str, header: Header, packet: bytes) -> None:
        line = json.dumps({"camera": camera_id, "sequence": header.sequence,
                           "timestamp_us": header.timestamp_us, "received_us": time.time_ns() // 1000,
                           "quality": header.quality, "bytes": len(packet)})
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()
