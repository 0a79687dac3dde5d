"""The server, wired in one place:

    TCP/TLS listener --\\
                        >-- Ingest (auth, limits, duplicates) --> FrameHub --> frame log, decode probe,
    MQTT subscriber ---/                                                    recorder, live view

Everything starts in ``run`` and stops in reverse order when ``stop`` is set.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Callable, Optional

from edgecodec.errors import ConfigError
from edgecodec.sdnotify import Notifier
from edgecodec.server.config import DEFAULTS, HTTP_DEFAULT_PORT
from edgecodec.server.hub import FrameHub
from edgecodec.server.ingest import Ingest, ServerLimits, Watermarks
from edgecodec.transport import auth
from edgecodec.transport.base import DEFAULT_PORT

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServerConfig:
    """What ``EdgeServer`` runs on, built from the option table by ``server.config.server_config``;
    the defaults are the table's (None where the table has '' or 0 for "off")."""

    secrets_file: str
    listen: Optional[str] = DEFAULTS.ingest.listen  # None: no TCP listener (MQTT only)
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    mqtt: Optional[str] = None
    mqtt_ca: Optional[str] = None
    state_dir: Optional[str] = None
    limits: ServerLimits = dataclasses.field(default_factory=ServerLimits)
    frame_log: Optional[str] = None
    probe: bool = False
    probe_reference: Optional[str] = None
    probe_warmup_s: float = 0.0
    probe_cameras: Optional[list] = None
    model: Optional[str] = None
    decode_threads: int = DEFAULTS.decode.threads
    decoder: str = DEFAULTS.decode.decoder  # synthesis for the live view and the probe (see Codec.load)
    record: Optional[str] = None
    record_rotate_bytes: int = int(DEFAULTS.record.rotate_mb * (1 << 20))
    record_rotate_seconds: float = DEFAULTS.record.rotate_minutes * 60
    retain_days: Optional[float] = None  # with record: delete recordings older than this (None: keep)
    retain_gb: Optional[float] = None  # with record: keep at most this much per camera (None: no limit)
    retention_interval_s: float = 60.0
    http: Optional[str] = None
    http_users: Optional[str] = None  # TOML file with a [viewers] table: the live view asks for a password
    http_tls: bool = False  # serve the live view over HTTPS with tls_cert / tls_key
    port_file: Optional[str] = None
    status_interval: float = DEFAULTS.service.status_interval  # seconds between per-camera status lines; 0 = never


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    try:
        value = int(port)
        if not 0 <= value <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{text!r} is not HOST:PORT") from None
    return host.strip("[]") or "0.0.0.0", value


def desktop_consumers(hub: FrameHub, config: ServerConfig) -> list:
    """The recorder and the live view (``edgecodec.recording``, ``edgecodec.web``), when asked for.

    Each ``attach`` subscribes to ``hub`` and returns an object whose ``close()`` (plain or a
    coroutine) detaches it; only the live view decodes, and only what someone watches.
    """
    attached = []
    if config.record:
        try:
            from edgecodec import recording
        except ImportError:
            raise ConfigError("--record needs edgecodec.recording, which this build does not have") from None
        attached.append(recording.attach(hub, config.record, rotate_bytes=config.record_rotate_bytes,
                                         rotate_seconds=config.record_rotate_seconds))
        if config.retain_days or config.retain_gb:
            from edgecodec.recording.retention import Retention, RetentionTask, policy_from_options

            policy = policy_from_options(config.retain_days, config.retain_gb)
            attached.append(RetentionTask(Retention(config.record, policy), config.retention_interval_s).start())
    elif config.retain_days or config.retain_gb:
        raise ConfigError("--retain-days and --retain-gb need --record")
    if config.http:
        try:
            from edgecodec import web
        except ImportError:
            raise ConfigError("--http needs edgecodec.web, which this build does not have") from None
        host, port = parse_host_port(config.http, HTTP_DEFAULT_PORT)
        if config.http_tls and not config.tls_cert:
            raise ConfigError("--http-tls needs --tls-cert")
        viewers = web.Viewers.load(config.http_users) if config.http_users else None
        context = auth.server_context(config.tls_cert, config.tls_key) if config.http_tls else None
        attached.append(web.attach(hub, host, port, model=config.model, threads=config.decode_threads,
                                   decoder=config.decoder,
                                   viewers=viewers, ssl_context=context))
    return attached


class EdgeServer:
    def __init__(self, config: ServerConfig, hub: Optional[FrameHub] = None,
                 notifier: Optional[Notifier] = None):
        self.config = config
        self.notifier = notifier or Notifier()  # systemd: READY=1 once listening, WATCHDOG=1 while the loop runs
        self.hub = hub or FrameHub()
        self.ingest = Ingest(self.hub, auth.load_secrets(config.secrets_file),
                             Watermarks(config.state_dir), config.limits)
        self.address: Optional[tuple[str, int]] = None
        self.started_at = time.time()
        self.cpu_at_start = time.process_time()
        self.probe = None

    async def run(self, stop: asyncio.Event, on_ready: Optional[Callable[["EdgeServer"], None]] = None) -> dict:
        """Serve until ``stop`` is set; return the figures."""
        cfg = self.config
        closers: list[Callable] = []
        try:
            if cfg.frame_log:
                from edgecodec.server.framelog import FrameLog

                frame_log = FrameLog(cfg.frame_log)
                self.hub.subscribe(frame_log)
                closers.append(frame_log.close)
            if cfg.probe:
                from edgecodec.server.probe import DecodeProbe

                def load_codec():
                    from edgecodec.codec import Codec

                    return Codec.load(cfg.model, threads=cfg.decode_threads, decoder=cfg.decoder)

                self.probe = DecodeProbe(self.hub, load_codec, cfg.probe_reference, cfg.probe_warmup_s,
                                         set(cfg.probe_cameras) if cfg.probe_cameras else None)
                self.probe.start()
                closers.append(self.probe.close)
            for consumer in desktop_consumers(self.hub, cfg):
                closers.append(consumer.close)
            if cfg.listen:
                from edgecodec.server.tcp import TcpIngestServer

                ssl_context = auth.server_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert else None
                tcp = TcpIngestServer(self.ingest, ssl_context)
                self.address = await tcp.start(*parse_host_port(cfg.listen))
                closers.append(tcp.close)
            if cfg.mqtt:
                from edgecodec.server.mqtt import MqttIngest

                mqtt = MqttIngest(self.ingest, cfg.mqtt, cfg.mqtt_ca)
                await asyncio.get_running_loop().run_in_executor(None, mqtt.start)
                closers.append(mqtt.close)
            self.started_at = time.time()
            self.cpu_at_start = time.process_time()
            if cfg.port_file and self.address:
                tmp = cfg.port_file + ".tmp"
                with open(tmp, "w") as f:
                    f.write(f"{self.address[1]}\n")
                os.replace(tmp, cfg.port_file)
            if on_ready:
                on_ready(self)
            await self._serve_until(stop)
            log.info("stopping")
        finally:
            self.notifier.stopping("stopping")
            for close in reversed(closers):
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            self.ingest.watermarks.flush()
        return self.figures()

    async def _serve_until(self, stop: asyncio.Event) -> None:
        """Tell systemd the server is ready, then until ``stop``: a watchdog ping a third of the watchdog
        interval apart (the event loop answering is what it proves) and a status line every
        ``status_interval`` seconds."""
        where = f"TCP {self.address[0]}:{self.address[1]}" if self.address else "MQTT only"
        self.notifier.ready(f"accepting cameras on {where}")
        watchdog = self.notifier.watchdog_interval()
        status_every = self.config.status_interval or None
        loop = asyncio.get_running_loop()
        next_status = loop.time() + status_every if status_every else None
        while not stop.is_set():
            now = loop.time()
            waits = [w for w in (watchdog / 3 if watchdog else None,
                                 next_status - now if next_status is not None else None) if w is not None]
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, min(waits)) if waits else None)
            except asyncio.TimeoutError:
                pass
            if stop.is_set():
                break
            if watchdog:
                self.notifier.watchdog()
            if next_status is not None and loop.time() >= next_status:
                next_status = loop.time() + status_every
                self.log_status()

    def log_status(self) -> None:
        for st in self.hub.cameras():
            log.info("camera %s: %s, %.1f frames/s, %.0f kbit/s, %d frames, %d dropped on the edge",
                     st.camera_id, "connected" if st.connected else "offline", st.fps(), st.kbps(),
                     st.frames, st.dropped)

    def figures(self) -> dict:
        cameras = {}
        for st in self.hub.cameras():
            span = max(st.last_seen - st.first_seen, 1e-9)
            cameras[st.camera_id] = {
                "frames": st.frames, "bytes": st.bytes, "dropped_on_edge": st.dropped,
                "fps": round((st.frames - 1) / span, 2) if st.frames > 1 else 0.0,
                "kbps": round(st.bytes * 8 / 1000 / span, 1) if st.frames > 1 else 0.0,
                "connected": st.connected, "width": st.width, "height": st.height,
            }
        out = {"uptime_s": round(time.time() - self.started_at, 3),
               "cpu_s": round(time.process_time() - self.cpu_at_start, 3),  # since ready: no start-up
               "cameras": cameras,
               "ingest": self.ingest.summary()}
        if self.probe is not None:
            out["probe"] = self.probe.summary()
        return out
