"""What every server transport does with an arriving frame: verify, drop duplicates, hand to the hub.

Duplicates are recognised by (camera id, stream id, sequence): an edge numbers its frames in
increasing order within a stream, and its stream id changes only when it loses its state, so a
frame at or below the highest sequence already stored for that stream is a resend. Transports
acknowledge a frame only after ``accept`` returns, so an acknowledged frame is stored.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import threading
import time
from typing import Optional

from edgecodec import bitstream
from edgecodec.bitstream import Header, Kind
from edgecodec.errors import BitstreamError
from edgecodec.server.hub import FrameHub

log = logging.getLogger(__name__)

STREAMS_KEPT = 8  # watermarks remembered per camera (older stream ids are forgotten)


@dataclasses.dataclass
class ServerLimits:
    """Bounds that keep a broken or hostile client from exhausting the server."""

    max_connections: int = 64
    max_packet: int = 4 << 20
    idle_timeout: float = 30.0
    handshake_timeout: float = 5.0


@dataclasses.dataclass
class IngestCounters:
    frames: int = 0
    delta_frames: int = 0  # of the frames, those coded against an earlier one (stream mode)
    duplicates: int = 0
    gaps: int = 0  # chained frames refused because an earlier one went missing (MQTT)
    rejected: int = 0
    auth_failures: int = 0
    bytes: int = 0
    edge_dropped: int = 0


class Watermarks:
    """The highest stored sequence per (camera, stream); kept in ``state_dir`` across restarts if given."""

    def __init__(self, state_dir: Optional[str] = None):
        self._dir = pathlib.Path(state_dir) if state_dir else None
        self._marks: dict[str, dict[bytes, tuple[int, float]]] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            for path in self._dir.glob("*.json"):
                self._load(path)

    def _load(self, path: pathlib.Path) -> None:
        try:
            doc = json.loads(path.read_text())
            self._marks[path.stem] = {bytes.fromhex(s): (int(v["sequence"]), float(v["updated"]))
                                      for s, v in doc["streams"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable watermark file %s: %s", path, exc)

    def get(self, camera_id: str, stream_id: bytes) -> Optional[int]:
        with self._lock:
            entry = self._marks.get(camera_id, {}).get(stream_id)
            return None if entry is None else entry[0]

    def advance(self, camera_id: str, stream_id: bytes, sequence: int, follows: Optional[int] = None,
                chained: bool = False) -> str:
        """Record ``sequence`` as stored unless it is a duplicate or would leave a hole.

        Returns "new", "duplicate" (at or below the watermark) or "gap". A gap is only possible for
        ``chained`` frames (MQTT), which name the frame sent before them (``follows``, None for the
        first on a connection): storing one whose predecessor is newer than the watermark would
        let its acknowledgement cover frames the broker lost.
        """
        with self._lock:
            streams = self._marks.setdefault(camera_id, {})
            entry = streams.get(stream_id)
            if entry is not None and sequence <= entry[0]:
                return "duplicate"
            if chained and follows is not None and (entry is None or follows > entry[0]):
                return "gap"
            streams[stream_id] = (sequence, time.time())
            if len(streams) > STREAMS_KEPT:
                del streams[min(streams, key=lambda s: streams[s][1])]
            self._dirty.add(camera_id)
            return "new"

    def flush(self, camera_id: Optional[str] = None) -> None:
        """Write changed watermarks (one camera, or all) so a restarted server still knows them."""
        if self._dir is None:
            return
        with self._lock:
            names = [camera_id] if camera_id is not None else list(self._dirty)
            docs = {}
            for name in names:
                if name in self._dirty:
                    self._dirty.discard(name)
                    docs[name] = {"streams": {s.hex(): {"sequence": q, "updated": t}
                                              for s, (q, t) in self._marks[name].items()}}
        for name, doc in docs.items():
            tmp = self._dir / f".{name}.{threading.get_ident()}.tmp"
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self._dir / f"{name}.json")


class Ingest:
    """Transport-neutral frame acceptance, shared by the TCP and MQTT servers (thread-safe)."""

    def __init__(self, hub: FrameHub, secrets: dict[str, bytes], watermarks: Watermarks,
                 limits: ServerLimits):
        self.hub = hub
        self.secrets = secrets
        self.watermarks = watermarks
        self.limits = limits
        self._lock = threading.Lock()
        self.counters: dict[str, IngestCounters] = {}

    def _count(self, camera_id: str) -> IngestCounters:
        with self._lock:
            return self.counters.setdefault(camera_id, IngestCounters())

    def secret(self, camera_id: str) -> Optional[bytes]:
        return self.secrets.get(camera_id)

    def auth_failed(self, camera_id: str, peer: str, why: str, quiet: bool = False) -> None:
        if not quiet:
            log.warning("refused camera %r from %s: %s", camera_id, peer, why)
        if camera_id in self.secrets:  # unknown ids are not counted: they would grow this table
            self._count(camera_id).auth_failures += 1

    def reject(self, camera_id: str) -> None:
        """Count a packet refused before it reached ``accept`` (bad framing, oversized)."""
        self._count(camera_id).rejected += 1

    def accept(self, camera_id: str, stream_id: bytes, packet: bytes, model_id: Optional[bytes] = None,
               follows: Optional[int] = None, chained: bool = False) -> tuple[Header, bool]:
        """Verify one frame packet and store it unless it is a duplicate; return (header, stored).

        ``follows``/``chained``: see ``Watermarks.advance``. Raises BitstreamError for anything that
        is not an intact frame packet of ``model_id``.
        """
        counters = self._count(camera_id)
        try:
            if len(packet) > self.limits.max_packet:
                raise BitstreamError(f"packet of {len(packet)} bytes exceeds {self.limits.max_packet}")
            header, _ = bitstream.unpack(packet, expect_model_id=model_id)
            if header.kind not in (Kind.FRAME, Kind.DELTA):  # key frames and delta frames of a stream
                raise BitstreamError(f"expected a FRAME or DELTA packet, got {header.kind.name}")
        except BitstreamError:
            counters.rejected += 1
            raise
        verdict = self.watermarks.advance(camera_id, stream_id, header.sequence, follows, chained)
        if verdict != "new":
            if verdict == "duplicate":
                counters.duplicates += 1
            else:
                counters.gaps += 1
            return header, False
        counters.frames += 1
        counters.delta_frames += header.kind == Kind.DELTA
        counters.bytes += len(packet)
        try:
            self.hub.publish(camera_id, header, packet)
        except Exception:  # a failing consumer must not cost other consumers or the camera its link
            log.exception("a frame consumer failed on %s frame %d", camera_id, header.sequence)
        # Written right after storing, so a server killed at any point can only repeat a frame
        # stored in the last microseconds, not every frame it had not acknowledged yet.
        self.watermarks.flush(camera_id)
        return header, True

    def edge_dropped(self, camera_id: str, count: int) -> None:
        if count:
            self._count(camera_id).edge_dropped += count
            self.hub.add_dropped(camera_id, count)

    def set_connected(self, camera_id: str, connected: bool) -> None:
        self.hub.set_connected(camera_id, connected)

    def summary(self) -> dict:
        with self._lock:
            return {cid: dataclasses.asdict(c) for cid, c in sorted(self.counters.items())}
