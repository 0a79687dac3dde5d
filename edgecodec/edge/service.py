"""Run the edge pipeline as a service: readiness, a heartbeat that feeds systemd's watchdog only while
every stage makes progress, periodic status, and a drain on stop (SIGTERM sets ``stop``)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from edgecodec.edge.config import EdgeConfig
from edgecodec.edge.pipeline import EdgePipeline
from edgecodec.sdnotify import Notifier
from edgecodec.errors import EdgecodecError
from edgecodec.transport import AuthRefused

log = logging.getLogger(__name__)


def status_line(f: dict) -> str:
    link = "connected" if f["connected"] else "offline"
    return (f"{f['fps']:.1f} frames/s, {f['kbps']:.0f} kbit/s, encode {f['encode_ms']:.0f} ms, "
            f"{f['dropped_at_source']} dropped at source, {f['spool_frames']} in spool, {link}")


def run(config: EdgeConfig, stop: threading.Event, duration: Optional[float] = None,
        notifier: Optional[Notifier] = None, pipeline: Optional[EdgePipeline] = None) -> dict:
    """Stream until ``stop`` is set, ``duration`` s pass or the source ends; return the figures."""
    notifier = notifier or Notifier()
    pipeline = pipeline or EdgePipeline(config)
    pipeline.start()
    metrics = None
    if config.service.metrics_listen:
        from edgecodec.edge.metrics import MetricsServer

        try:
            metrics = MetricsServer(config.service.metrics_listen, pipeline.figures)
        except EdgecodecError:
            pipeline.stop()
            raise
    watchdog = notifier.watchdog_interval()
    tick = min(1.0, watchdog / 3) if watchdog else 1.0
    notifier.ready(f"streaming {config.camera.source} to {config.link.server}")
    started = last_status = time.monotonic()
    warned = False
    try:
        while not stop.wait(tick):
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if pipeline.done():
                break
            problems = pipeline.problems(config.service.stall_timeout)
            if problems:
                if not warned:
                    log.warning("pipeline unhealthy, withholding the watchdog ping: %s", "; ".join(problems))
                warned = True
            else:
                warned = False
                notifier.watchdog()
            interval = config.service.status_interval
            if interval and now - last_status >= interval:
                last_status = now
                line = status_line(pipeline.figures())
                log.info("%s", line)
                notifier.status(line)
    finally:
        notifier.stopping("draining")
        pipeline.stop()
        if metrics is not None:
            metrics.close()
    figures = pipeline.figures()
    log.info("stopped: %s", status_line(figures))
    failure = pipeline.failure()
    if isinstance(failure, AuthRefused):  # says all there is to say: wrong secret or camera id
        raise failure
    if failure is not None:
        raise EdgecodecError(f"pipeline stage failed: {failure}")
    return figures
