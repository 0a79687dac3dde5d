"""The edge's figures for Prometheus: ``GET /metrics`` on ``[service] metrics_listen`` (off by default).

The figures are the pipeline's (``EdgePipeline.figures``), read on each scrape; a small thread runs
the standard library's HTTP server, which is all one read-only endpoint needs on a camera.
"""
from __future__ import annotations

import http.server
import logging
import threading
from typing import Callable

from edgecodec import prometheus
from edgecodec.errors import EdgecodecError
from edgecodec.options import split_host_port

log = logging.getLogger(__name__)

#: (metric name, type, help, [(extra labels, figure key), ...]); every sample also has camera="ID".
METRICS = (
    ("edgecodec_edge_frames_captured_total", "counter", "Frames taken from the source.",
     [({}, "captured")]),
    ("edgecodec_edge_frames_encoded_total", "counter", "Frames encoded, by kind: key frames decode on "
     "their own, delta frames need the frame before.", [({"kind": "key"}, "key_frames"),
                                                        ({"kind": "delta"}, "delta_frames")]),
    ("edgecodec_edge_encoded_bits_total", "counter", "Bits of the encoded frames, by kind.",
     [({"kind": "key"}, "key_bits"), ({"kind": "delta"}, "delta_bits")]),
    ("edgecodec_edge_frames_dropped_total", "counter", "Frames lost on the edge: at the source (the encoder "
     "was busy, newest wins), left out by rate control, or pushed out of a full spool.",
     [({"where": "source"}, "dropped_at_source"), ({"where": "rate_control"}, "skipped_by_rate_control"),
      ({"where": "spool"}, "spool_dropped")]),
    ("edgecodec_edge_encode_milliseconds", "gauge", "Encode time of a frame (running average).",
     [({}, "encode_ms")]),
    ("edgecodec_edge_encoded_fps", "gauge", "Frames encoded per second since start.", [({}, "fps")]),
    ("edgecodec_edge_kbps", "gauge", "Encoded kilobits per second since start.", [({}, "kbps")]),
    ("edgecodec_edge_spool_frames", "gauge", "Frames waiting in the spool for the server.",
     [({}, "spool_frames")]),
    ("edgecodec_edge_frames_sent_total", "counter", "Frames sent to the server.", [({}, "sent")]),
    ("edgecodec_edge_frames_acked_total", "counter", "Frames the server acknowledged.", [({}, "acked")]),
    ("edgecodec_edge_link_connected", "gauge", "1 while the link to the server is up.", [({}, "connected")]),
    ("edgecodec_edge_link_connects_total", "counter", "Connections made to the server.", [({}, "connects")]),
)


def samples(figures: dict) -> dict:
    """``figures`` with the derived values the table reads (bits from bytes)."""
    return {**figures, "key_bits": 8 * figures.get("key_bytes", 0), "delta_bits": 8 * figures.get("delta_bytes", 0)}


def render(figures: dict) -> str:
    """Prometheus text for one camera's pipeline figures."""
    values = samples(figures)
    camera = {"camera": values.get("camera", "")}
    return prometheus.render(
        prometheus.family(name, kind, help_text, (({**camera, **labels}, values.get(key, 0))
                                                  for labels, key in series))
        for name, kind, help_text, series in METRICS)


class MetricsServer:
    """``GET /metrics`` (and nothing else) on a daemon thread; ``close`` stops it."""

    def __init__(self, address: str, figures: Callable[[], dict]):
        host, port = split_host_port(address)
        read = figures

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                try:
                    body = render(read()).encode()
                except Exception as exc:  # a scrape must not take the pipeline down
                    log.warning("metrics: %s", exc)
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", prometheus.CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes every few seconds: not for the journal
                pass

        try:
            self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise EdgecodecError(f"[service] metrics_listen = {address!r}: cannot listen there: "
                                 f"{exc.strerror or exc}") from None
        self._httpd.daemon_threads = True
        self.address = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="edgecodec-metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.address)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
