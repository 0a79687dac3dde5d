"""Ingest from an MQTT broker: the same frames, checks and acks as the TCP listener, via topics.

Messages are handled in paho's network thread; ``Ingest`` and the hub are thread-safe.
"""
from __future__ import annotations

import logging
import os
import threading

from edgecodec.errors import BitstreamError, EdgecodecError
from edgecodec.server.ingest import Ingest
from edgecodec.transport import auth, wire
from edgecodec.transport import mqtt as mq

log = logging.getLogger(__name__)


class MqttIngest:
    def __init__(self, ingest: Ingest, url: str, tls_ca: str | None = None):
        self.ingest = ingest
        self.url = url
        self.host, self.port, self.tls, self.user, self.password, self.prefix = mq.broker(url)
        self.tls_ca = tls_ca
        self._client = None
        self._ready = threading.Event()
        self._warned: set[str] = set()

    def start(self, timeout: float = 10.0) -> None:
        client = mq.new_client(f"edgecodec-server-{os.urandom(3).hex()}", self.user, self.password,
                               self.tls, cafile=self.tls_ca)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *a, **k: self._ready.set()
        client.on_message = self._on_message
        client.on_disconnect = lambda *a, **k: log.warning("lost the MQTT broker; reconnecting")
        try:
            client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise EdgecodecError(f"cannot reach MQTT broker {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        self._client = client
        if not self._ready.wait(timeout):
            self.close()
            raise EdgecodecError(f"MQTT broker {self.host}:{self.port} did not accept our subscriptions")
        log.info("subscribed to %s/+/frame on %s:%d", self.prefix, self.host, self.port)

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the server: %s", reason)
            return
        # Subscribing on every (re)connection: a clean session forgets subscriptions.
        client.subscribe([(mq.topic(self.prefix, "+", kind), 1) for kind in ("frame", "dropped", "status")])

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) < 3 or "/".join(parts[:-2]) != self.prefix:
            return
        camera_id, kind = parts[-2], parts[-1]
        try:
            wire.check_camera_id(camera_id)
        except EdgecodecError:
            return
        if kind == "status":
            if camera_id in self.ingest.secrets:
                self.ingest.set_connected(camera_id, msg.payload == b"online")
            return
        secret = self.ingest.secret(camera_id)
        if secret is None:
            self._refuse_once(camera_id, "unknown camera")
            return
        try:
            if kind == "frame":
                self._frame(client, camera_id, secret, msg.payload)
            elif kind == "dropped":
                count = mq.parse_dropped_message(secret, camera_id, msg.payload)
                if count is None:
                    self._refuse_once(camera_id, "unsigned or wrongly signed drop report")
                else:
                    self.ingest.edge_dropped(camera_id, count)
        except Exception:  # one bad message must not stop the network thread
            log.exception("MQTT message on %s failed", msg.topic)

    def _frame(self, client, camera_id: str, secret: bytes, payload: bytes) -> None:
        try:
            packet, stream_id, follows, tag = mq.parse_frame_message(payload)
        except BitstreamError as exc:
            log.warning("camera %s: rejected MQTT frame message: %s", camera_id, exc)
            self.ingest.reject(camera_id)
            return
        expected = auth.frame_tag(secret, camera_id, stream_id, mq.frame_tag_input(packet, follows))
        if not auth.verify(expected, tag):
            self._refuse_once(camera_id, "wrong secret (frame tag does not verify)")
            return
        try:
            self.ingest.accept(camera_id, stream_id, packet, follows=follows, chained=True)
        except BitstreamError as exc:
            log.warning("camera %s: rejected frame packet: %s", camera_id, exc)
            return
        # Acknowledge the watermark, not this frame: after a gap it stays put, the edge times out
        # and resends from its oldest unacknowledged frame.
        last = self.ingest.watermarks.get(camera_id, stream_id)
        if last is not None:
            client.publish(mq.topic(self.prefix, camera_id, "ack"),
                           mq.ack_message(secret, camera_id, stream_id, last), qos=1)

    def _refuse_once(self, camera_id: str, why: str) -> None:
        """Log a refusal once per camera and reason: a misconfigured camera sends 30 frames a second."""
        key = f"{camera_id}:{why}"
        first = key not in self._warned
        if first and len(self._warned) < 10000:
            self._warned.add(key)
        self.ingest.auth_failed(camera_id, f"mqtt://{self.host}:{self.port}", why, quiet=not first)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self.ingest.watermarks.flush()
