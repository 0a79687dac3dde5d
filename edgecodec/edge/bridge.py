"""The companion microcontroller as a pipeline stage: triggers, quality commands, frames over serial.

The stage owns one ``firmware_bridge.Link``. It is one of the encoder's taps: the encoder offers it every
encoded frame (``offer``, wired by ``attach``), beside the sender's queue and without waiting for it;
a TRIGGER from the MCU sends the newest one, or with ``mode = "all"`` every frame is sent. One
frame is in flight at a time and one waits, the newest: a slow serial line never builds a backlog.
SET_QUALITY replaces the encoder's rate control (``EncodeStage.set_rate``: a fixed quality, or a target
bitrate).

Only key frames go over serial: the line drops frames (newest wins) and the MCU keeps single frames,
so a delta frame would be undecodable there. In stream mode a trigger asks the encoder for a key
frame and sends that one; with ``mode = "all"`` the bridge asks for the next key frame whenever the
line is free, so the serial line still gets frames at its own pace (the network stream then carries
those extra key frames too). Delta frames the bridge does not send count as dropped.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from firmware_bridge import QUALITY_UNCHANGED, BridgeError, FrameRejected, Link, LinkHandler, SetQuality, Trigger

from edgecodec.edge.config import BridgeConfig
from edgecodec.edge.encoder import Encoded, EncodeStage
from edgecodec.edge.ratecontrol import FixedQuality, RateController
from edgecodec.edge.stage import Stage
from edgecodec.errors import ConfigError
from edgecodec.latest import LatestSlot

log = logging.getLogger(__name__)

SEND_TIMEOUT = 30.0  # seconds one frame may take on the serial line before it is given up


def enabled(config: BridgeConfig) -> bool:
    return bool(config.port) and config.mode != "off"


class _McuEvents(LinkHandler):
    """The MCU's triggers and quality commands, handed to the stage."""

    def __init__(self, stage: "BridgeStage"):
        self.stage = stage

    def on_trigger(self, msg: Trigger) -> None:
        self.stage._on_trigger(msg)

    def on_set_quality(self, msg: SetQuality) -> None:
        self.stage._on_set_quality(msg)


class BridgeStage(Stage):
    """Serial link to the MCU; ``port`` may be an open serial-like object in place of ``config.port``.

    ``attach`` connects it to the encoder both ways: the frames in, key frame requests and rate control out.
    """

    name = "bridge"

    def __init__(self, config: BridgeConfig, encoder: EncodeStage, qualities: Sequence[int], fps: float,
                 port: Any = None, send_timeout: float = SEND_TIMEOUT):
        super().__init__()
        self.config = config
        self.encoder = encoder  # request_key, set_rate, intra, key_interval_s
        self.qualities = sorted(qualities)
        self.fps = fps
        self.send_timeout = send_timeout
        self.sent = 0          # frames the MCU holds bit-exact
        self.failed = 0        # frames given up (deadline, retries, rejected)
        self.triggers = 0
        self.no_frame = 0      # triggers that came before any frame was encoded
        self.quality_commands = 0
        self._latest: Optional[Encoded] = None
        self._trigger_pending = False  # a trigger waits for the key frame it asked for
        self.deltas_skipped = 0  # delta frames not sent (they do not decode on their own)
        self._outbox: LatestSlot[Encoded] = LatestSlot()
        try:
            # Opened here, before any stage starts, so a bad port fails the start cleanly.
            self.link = Link(port if port is not None else config.port, config.baudrate, name="edgecodec",
                             handler=_McuEvents(self))
        except BridgeError as exc:
            raise ConfigError(f"[bridge] port = {config.port!r}: {exc}") from None

    @classmethod
    def attach(cls, config: BridgeConfig, encoder: EncodeStage, qualities: Sequence[int], fps: float,
               **kw) -> "BridgeStage":
        """A bridge that receives every frame ``encoder`` encodes (one of its taps) and steers it."""
        stage = cls(config, encoder, qualities, fps, **kw)
        encoder.add_tap(stage)
        return stage

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one while the link was busy, and delta frames not sent."""
        return self._outbox.replaced + self.deltas_skipped

    @property
    def _streaming(self) -> bool:
        return not getattr(self.encoder, "intra", True)

    def offer(self, item: Encoded) -> None:
        """Called by the encoder for every frame; never blocks."""
        if not item.key:
            self.deltas_skipped += 1
            return
        self._latest = item
        if self.config.mode == "all" or self._trigger_pending:
            self._trigger_pending = False
            self._outbox.put(item)

    def _on_trigger(self, trigger: Trigger) -> None:
        self.triggers += 1
        if self._latest is None:
            self.no_frame += 1
            log.warning("trigger from the MCU before any frame was encoded")
            if not self._streaming:
                return
        if self._streaming:  # the newest frame is likely a delta frame: send a fresh key frame
            self._trigger_pending = True
            self.encoder.request_key("the MCU triggered a frame")
            return
        self._outbox.put(self._latest)

    def _on_set_quality(self, msg: SetQuality) -> None:
        """Quality 0xFF leaves the quality as it is (the protocol's rule); target_bps 0 means a fixed quality."""
        self.quality_commands += 1
        quality = None if msg.quality == QUALITY_UNCHANGED else msg.quality
        if quality is not None and quality not in self.qualities:
            log.warning("MCU asked for quality %d; this model has %d..%d", quality, self.qualities[0],
                        self.qualities[-1])
            return
        if msg.target_bps:
            current = quality if quality is not None else (self._latest.quality if self._latest is not None else None)
            rate = RateController(msg.target_bps / 1000, self.qualities, self.fps, start_quality=current,
                                  key_interval_s=getattr(self.encoder, "key_interval_s", None))
        elif quality is not None:
            rate = FixedQuality(quality)
        else:
            return
        self.encoder.set_rate(rate)
        log.info("MCU set quality=%s target_bps=%d", quality if quality is not None else "unchanged",
                 msg.target_bps)

    def run(self) -> None:
        while True:
            item = self._outbox.get(timeout=0.2)
            self.beat()
            if item is None:
                if self.stopping:
                    return
                continue
            try:
                # Each acknowledged chunk is progress: a long transfer on a slow line is no stall.
                ok = self.link.send_frame(item.packet, timeout=self.send_timeout,
                                          progress=lambda done, total: self.beat())
            except FrameRejected as exc:
                log.warning("MCU rejected frame %d: %s", item.sequence, exc)
                ok = False
            if ok:
                self.sent += 1
            else:
                self.failed += 1
                self.link.drop_pending()  # a newer frame matters more than resuming this one
            if self.config.mode == "all" and self._streaming:
                self.encoder.request_key("the serial line is free")
            if self.stopping:
                return

    def stop(self) -> None:
        super().stop()
        self._outbox.close()

    def close(self) -> None:
        self.link.close()

    def figures(self) -> dict:
        return {"serial_sent": self.sent, "serial_failed": self.failed, "serial_dropped": self.dropped,
                "serial_triggers": self.triggers, "serial_quality_commands": self.quality_commands,
                "serial_peer_alive": self.link.peer_alive}

