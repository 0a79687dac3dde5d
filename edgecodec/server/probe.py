"""Decode what the cameras send, to measure it: capture-to-decoded latency and, for the synthetic
scene, PSNR against the original (recomputed from each frame's timestamp).

Decoding happens only here, where someone looks. Each camera has a worker that shows (synthesizes) its
newest frame; frames that arrive while it is busy are skipped (counted), so the probe never holds up
ingest or falls behind. In stream mode a skipped frame's latents are still decoded, in order (cheap;
see ``follow``), because the next delta frame is coded against them; a probe that starts mid-stream
begins at the camera's last key frame (the hub keeps the frames since), and after a gap it waits for
the next key frame, logging once and counting the frames it could not decode.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

import numpy as np

from edgecodec.bitstream import Header
from edgecodec.evaluate import psnr
from edgecodec.server.follow import StreamFollower
from edgecodec.server.hub import FrameHub

log = logging.getLogger(__name__)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    arr = np.asarray(values)
    return {"median": round(float(np.median(arr)), 1), "p95": round(float(np.percentile(arr, 95)), 1),
            "p99": round(float(np.percentile(arr, 99)), 1), "max": round(float(arr.max()), 1)}


class _CameraProbe:
    def __init__(self, camera_id: str, probe: "DecodeProbe"):
        self.camera_id = camera_id
        self.pending: list = []  # (header, packet) in arrival order, guarded by probe._lock
        self.ready = threading.Event()
        self.skipped = 0  # frames not shown: newer ones came while the worker was busy
        self.follower: Optional[StreamFollower] = None
        self.received_ms: list[float] = []
        self.decoded_ms: list[float] = []
        self.psnr: list[float] = []
        self.decode_ms: list[float] = []
        self.errors = 0
        self.cpu_s = 0.0
        self.thread = threading.Thread(target=probe._work, args=(self,), daemon=True,
                                       name=f"probe-{camera_id}")


class DecodeProbe:
    """A FrameHub subscriber; ``summary()`` gives the figures per camera. start/close like a stage."""

    def __init__(self, hub: FrameHub, load_codec: Callable[[], object], reference: Optional[str] = None,
                 warmup_s: float = 0.0, cameras: Optional[set] = None):
        self.hub = hub
        self.load_codec = load_codec
        self.reference = reference  # "synthetic" or None
        self.warmup_s = warmup_s
        self.only = cameras  # None: every camera
        self._codec = None
        self._cameras: dict[str, _CameraProbe] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._scenes: dict[tuple[int, int], object] = {}
        self._started = time.monotonic()

    def start(self) -> None:
        self._codec = self.load_codec()
        self._started = time.monotonic()
        self.hub.subscribe(self._on_frame)

    def _on_frame(self, camera_id: str, header: Header, packet: bytes) -> None:
        if self.only is not None and camera_id not in self.only:
            return
        received = time.time_ns() / 1e6
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                cam = self._cameras[camera_id] = _CameraProbe(camera_id, self)
                # Joining mid-stream: start from the camera's last key frame (this frame included).
                cam.pending = self.hub.since_key(camera_id) or [(header, packet)]
                cam.thread.start()
            else:
                cam.pending.append((header, packet))
            cam.ready.set()
        if time.monotonic() - self._started >= self.warmup_s:
            cam.received_ms.append(received - header.timestamp_us / 1e3)

    def _work(self, cam: _CameraProbe) -> None:
        cam.follower = StreamFollower(self._codec, cam.camera_id, who="probe")
        while not self._stop.is_set():
            if not cam.ready.wait(0.2):
                continue
            with self._lock:
                frames, cam.pending = cam.pending, []
                cam.ready.clear()
            if not frames:
                continue
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                shown = cam.follower.advance(frames)
                if shown is None:  # waiting for a key frame (counted by the follower)
                    continue
                header, y = shown
                cam.skipped += len(frames) - 1
                image = self._codec.synthesize(header, y)
            except Exception as exc:  # a probe must never take the server down
                cam.errors += 1
                log.warning("probe could not decode %s frame %d: %s", cam.camera_id, frames[-1][0].sequence, exc)
                cam.follower.reset()
                continue
            done = time.time_ns() / 1e6
            if time.monotonic() - self._started >= self.warmup_s:
                cam.decode_ms.append((time.perf_counter() - t0) * 1e3)
                cam.decoded_ms.append(done - header.timestamp_us / 1e3)
                if self.reference == "synthetic":
                    cam.psnr.append(psnr(image, self._scene(header).render(header.timestamp_us)))
            cam.cpu_s += time.thread_time() - c0  # the probe's whole cost, comparison included

    def _scene(self, header: Header):
        from edgecodec.testscene import TestScene

        key = (header.width, header.height)
        if key not in self._scenes:
            self._scenes[key] = TestScene(*key)
        return self._scenes[key]

    def close(self) -> None:
        self.hub.unsubscribe(self._on_frame)
        self._stop.set()
        for cam in list(self._cameras.values()):
            cam.thread.join(2.0)

    def summary(self) -> dict:
        out = {}
        for cid, cam in sorted(self._cameras.items()):
            out[cid] = {
                "decoded": len(cam.decoded_ms),
                "decoder": getattr(self._codec, "decoder_kind", None),
                "decode_errors": cam.errors + (cam.follower.errors if cam.follower else 0),
                "skipped_while_busy": cam.skipped,
                "waiting_for_key_frame": cam.follower.waiting_frames if cam.follower else 0,
                "key_frame_waits": cam.follower.waits if cam.follower else 0,
                "decode_ms": percentiles(cam.decode_ms),
                "latency_received_ms": percentiles(cam.received_ms),
                "latency_decoded_ms": percentiles(cam.decoded_ms),
                "psnr_db": round(float(np.mean(cam.psnr)), 2) if cam.psnr else None,
                "decode_cpu_s": round(cam.cpu_s, 2),
            }
        return out
