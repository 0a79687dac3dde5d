"""The edge pipeline, wired in one place:

    source -> CaptureStage -> [LatestSlot: newest wins] -> EncodeStage -> [bounded queue] -> SendStage -> Link
                                                                |                                   \\-> Spool
                                                                \\-> (tap) BridgeStage -> serial -> MCU

The bridge (``[bridge]``) is one of the encoder's taps, wired here with the sender: it is offered every
encoded frame beside the sender's queue, and steers the encoder back (key frames, rate control).

Stages start back to front and stop front to back, so on shutdown every frame already captured is
encoded and then either delivered or spooled.
"""
from __future__ import annotations

import logging
import queue
import time
from typing import Optional

from edgecodec import transport
from edgecodec.edge import bridge
from edgecodec.edge import config as edge_config
from edgecodec.edge.capture import CaptureStage
from edgecodec.edge.config import EdgeConfig
from edgecodec.edge.encoder import EncodeStage
from edgecodec.edge.ratecontrol import FixedQuality, RateController
from edgecodec.edge.sender import SendPolicy, SendStage
from edgecodec.edge.sources import open_source
from edgecodec.edge.spool import Spool
from edgecodec.edge.stream import StreamState
from edgecodec.errors import ConfigError, EdgecodecError
from edgecodec.latest import LatestSlot

log = logging.getLogger(__name__)

QUEUE_FRAMES = 4  # encoded frames waiting for the sender; beyond this the encoder waits


class EdgePipeline:
    def __init__(self, config: EdgeConfig, codec=None, environ=None):
        self.config = config
        self.codec = codec
        self.environ = environ
        self.state_dir = edge_config.spool_dir(config, environ)
        self.capture: Optional[CaptureStage] = None
        self.encoder: Optional[EncodeStage] = None
        self.sender: Optional[SendStage] = None
        self.spool: Optional[Spool] = None
        self.stream: Optional[StreamState] = None
        self.bridge = None  # a BridgeStage when [bridge] is configured
        self.started_at = 0.0

    def start(self) -> None:
        cfg = self.config
        network = edge_config.network_enabled(cfg)
        secret = edge_config.secret(cfg) if network else b""  # a bad secret file fails before the model loads
        codec = self.codec
        if codec is None:
            from edgecodec.edge.encoder import load_codec

            codec = self.codec = load_codec(cfg.encode.model, cfg.encode.threads, cfg.encode.encoder,
                                            cfg.camera.width, cfg.camera.height, analysis=cfg.encode.analysis,
                                            fps=cfg.camera.fps, delegate=cfg.encode.delegate or None)
        if cfg.encode.target_kbps > 0:
            rate = RateController(cfg.encode.target_kbps, codec.qualities, cfg.camera.fps,
                                  start_quality=min(cfg.encode.quality, codec.qualities[-1]),
                                  key_interval_s=None if cfg.encode.intra else cfg.encode.key_interval)
        elif cfg.encode.quality in codec.qualities:
            rate = FixedQuality(cfg.encode.quality)
        else:
            raise ConfigError(f"[encode] quality = {cfg.encode.quality}: this model has qualities "
                              f"{codec.qualities[0]}..{codec.qualities[-1]}")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgecodecError(f"cannot create state folder {self.state_dir}: {exc.strerror}") from None
        self.spool = Spool(self.state_dir / "spool", int(cfg.spool.max_mb * 1e6)).open()
        last = self.spool.last_sequence()
        self.stream = StreamState(self.state_dir / "stream.json", None if last is None else last + 1)
        if network:
            link_config = transport.LinkConfig(
                url=cfg.link.server, camera_id=cfg.camera.id, secret=secret, model_id=codec.model_id,
                stream_id=self.stream.stream_id, tls_pin=cfg.link.tls_pin or None,
                tls_ca=cfg.link.tls_ca or None, connect_timeout=cfg.link.connect_timeout,
                io_timeout=cfg.link.ack_timeout)
            transport.open_link(link_config)  # fail now on a bad URL, not in the sender thread

        slot: LatestSlot = LatestSlot()
        outbox: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.capture = CaptureStage(open_source(cfg.camera.source, cfg.camera.width, cfg.camera.height,
                                                cfg.camera.fps, cfg.camera.loop),
                                    slot, self.stream.next, retry_max=cfg.link.retry_max)
        self.encoder = EncodeStage(codec, slot, outbox if network else None, rate,
                                   key_interval_s=cfg.encode.key_interval, intra=cfg.encode.intra)
        if bridge.enabled(cfg.bridge):  # the MCU: triggers, quality commands, frames over serial
            self.bridge = bridge.BridgeStage.attach(cfg.bridge, self.encoder, codec.qualities, cfg.camera.fps)
        if network:
            self.sender = SendStage(
                outbox, lambda: transport.open_link(link_config), self.spool,
                lost_total=lambda: self.capture.dropped + self.encoder.skipped,
                policy=SendPolicy(ack_timeout=cfg.link.ack_timeout, retry_max=cfg.link.retry_max,
                                  drain_timeout=cfg.service.drain_timeout,
                                  auth_retries=cfg.link.auth_retries),
                request_key=self.encoder.request_key)
        self._slot = slot
        self.started_at = time.monotonic()
        for stage in (self.bridge, self.sender, self.encoder, self.capture):
            if stage is not None:
                stage.start()
        log.info("camera %s streaming to %s (stream %s, state in %s)", cfg.camera.id, cfg.link.server,
                 self.stream.stream_id.hex(), self.state_dir)

    def stop(self) -> None:
        """Stop capturing, encode what was captured, deliver or spool it, record the stream state."""
        if self.capture is None:
            return
        self.capture.stop()
        self.capture.join(5.0)
        self._slot.close()
        self.encoder.stop()
        if not self.encoder.join(5.0):
            log.warning("encoder did not finish in time")
        if self.sender is not None:
            self.sender.stop()
            if not self.sender.join(self.config.service.drain_timeout + 5.0):
                log.warning("sender did not finish in time")
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge.join(2.0)
            self.bridge.close()
        self.stream.close()

    @property
    def stages(self):
        return tuple(s for s in (self.capture, self.encoder, self.sender, self.bridge) if s is not None)

    def done(self) -> bool:
        """True once a stage has ended on its own: the video file ended, or a stage failed."""
        return any(stage.finished.is_set() for stage in self.stages)

    def failure(self) -> Optional[BaseException]:
        return next((s.error for s in self.stages if s.error is not None), None)

    def problems(self, stall_timeout: float) -> list[str]:
        """Why the pipeline is unhealthy (empty when it is fine): feeds the watchdog decision."""
        limit = max(stall_timeout, 3.0 / self.config.camera.fps)
        out = []
        for stage in self.stages:
            if stage.error is not None:
                out.append(f"{stage.name} failed: {stage.error}")
            elif stage.stalled_for() > limit:
                out.append(f"{stage.name} made no progress for {stage.stalled_for():.0f} s")
        return out

    def figures(self) -> dict:
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        c, e, s = self.capture, self.encoder, self.sender
        return {
            "camera": self.config.camera.id,
            "elapsed_s": round(elapsed, 3),
            "captured": c.captured,
            "dropped_at_source": c.dropped,
            "skipped_by_rate_control": e.skipped,
            "encoded": e.encoded,
            "key_frames": e.keys,
            "delta_frames": e.deltas,
            "key_requests": e.key_requests,
            "key_bytes": e.key_bytes,
            "delta_bytes": e.bytes - e.key_bytes,
            "encoder": getattr(self.codec, "encoder_kind", None),
            "analysis": getattr(self.codec, "analysis", None),
            "encode_ms": round(e.encode_ms, 1),
            "fps": round(e.encoded / elapsed, 2),
            "kbps": round(e.bytes * 8 / 1000 / elapsed, 1),
            "sent": s.sent if s else 0,
            "acked": s.acked if s else 0,
            "spooled": s.spooled if s else 0,
            "spool_frames": len(self.spool),
            "spool_dropped": self.spool.dropped,
            "connected": s.connected if s else False,
            "connects": s.connects if s else 0,
            **(self.bridge.figures() if self.bridge is not None else {}),
        }
