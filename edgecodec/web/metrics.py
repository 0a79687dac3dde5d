"""The live view's figures in Prometheus text format (exposition format 0.0.4)."""
from __future__ import annotations

from edgecodec import prometheus

CONTENT_TYPE = prometheus.CONTENT_TYPE

#: (metric name, type, help, how to read it from one camera's row of ``camera_rows``)
METRICS = (
    ("edgecodec_camera_frames_total", "counter", "Frames stored for the camera.", "frames"),
    ("edgecodec_camera_bytes_total", "counter", "Compressed bytes stored for the camera.", "bytes"),
    ("edgecodec_camera_fps", "gauge", "Frames per second over the last seconds.", "fps"),
    ("edgecodec_camera_kbps", "gauge", "Compressed kilobits per second over the last seconds.", "kbps"),
    ("edgecodec_camera_compression_ratio", "gauge", "Raw RGB bytes over compressed bytes.", "compression_ratio"),
    ("edgecodec_camera_last_seen_timestamp_seconds", "gauge", "Unix time of the camera's last frame.", "last_seen"),
    ("edgecodec_camera_dropped_frames_total", "counter", "Frames the camera reported dropping.", "dropped"),
    ("edgecodec_camera_connected", "gauge", "1 while the camera is connected.", "connected"),
    ("edgecodec_camera_viewers", "gauge", "Live viewers of the camera.", "viewers"),
    ("edgecodec_camera_decoded_frames_total", "counter", "Frames decoded for live viewers.", "decoded"),
    ("edgecodec_camera_frames_waiting_for_key_total", "counter",
     "Delta frames passed over for live viewers while waiting for a key frame.", "waiting_for_key_frame"),
    ("edgecodec_camera_key_frame_waits_total", "counter",
     "Times the live view joined or lost its place and had to wait for a key frame.", "key_frame_waits"),
)


def render(rows: list[dict]) -> str:
    """Prometheus text for ``rows`` (one dict per camera, as the live view's /api/cameras gives)."""
    return prometheus.render(
        prometheus.family(name, kind, help_text, (({"camera": row["camera"]}, row[key]) for row in rows))
        for name, kind, help_text, key in METRICS)
