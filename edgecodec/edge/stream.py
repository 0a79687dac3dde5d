"""The edge's stream identity, kept beside the spool: a random stream id and the next sequence number.

The server recognises resent frames by (camera, stream id, sequence), so sequence numbers must keep
increasing across restarts. Numbers are reserved in blocks on disk; after a crash the count resumes
past the reserved block (a gap, never a repeat). Losing the file starts a new stream id, so new
frames are never mistaken for duplicates of old ones.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Optional

log = logging.getLogger(__name__)

BLOCK = 1024


class StreamState:
    def __init__(self, path, floor: Optional[int] = None):
        self.path = pathlib.Path(path)
        self.stream_id = b""
        self._next = 0
        self._reserved = 0
        self._load(floor)

    def _load(self, floor: Optional[int]) -> None:
        try:
            doc = json.loads(self.path.read_text())
            self.stream_id = bytes.fromhex(doc["stream_id"])
            self._next = int(doc["next_sequence"])
            if len(self.stream_id) != 8 or self._next < 0:
                raise ValueError("bad values")
        except FileNotFoundError:
            self.stream_id, self._next = os.urandom(8), 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("stream state %s unreadable (%s): starting a new stream", self.path, exc)
            self.stream_id, self._next = os.urandom(8), 0
        if floor is not None:
            self._next = max(self._next, floor)
        self._reserve()

    def _reserve(self) -> None:
        self._reserved = self._next + BLOCK
        self._write(self._reserved)

    def _write(self, next_sequence: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stream_id": self.stream_id.hex(), "next_sequence": next_sequence}))
        os.replace(tmp, self.path)

    def next(self) -> int:
        """Take the next sequence number (one caller thread only)."""
        seq = self._next
        self._next += 1
        if self._next >= self._reserved:
            self._reserve()
        return seq

    def close(self) -> None:
        """Record the exact next number, so a clean restart leaves no gap."""
        self._write(self._next)
