"""The brokered link: frame packets as MQTT messages (paho-mqtt), for fleets that outgrow one server.

There is no session with the server, so each message carries its own proof: a frame is published
as ``packet | stream id (8) | previous sequence (8) | HMAC tag (32)`` and the server answers with an
equally signed ack. The previous sequence (the frame sent before this one on the same broker
connection, all ones for the first) lets the server notice frames the broker dropped, for example
while no server was subscribed, and refuse to acknowledge past them.
Topics, under a prefix (default ``edgecodec``), for camera CAM:

    PREFIX/CAM/frame    edge -> server   frame messages (QoS 1)
    PREFIX/CAM/dropped  edge -> server   stream id | count (u32) | tag
    PREFIX/CAM/ack      server -> edge   stream id | sequence (u64) | tag
    PREFIX/CAM/status   edge, retained   "online" / "offline" (the last will)
"""
from __future__ import annotations

import logging
import os
import struct
import threading
import urllib.parse
from typing import Optional

from edgecodec import bitstream
from edgecodec.errors import BitstreamError, ConfigError
from edgecodec.transport import auth, wire
from edgecodec.transport.base import AuthRefused, Link, LinkConfig, LinkError, parse_url

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "edgecodec"
# CONNACK refusals that mean the broker rejects our credentials (paho's names, MQTT 3.1.1 and 5).
AUTH_REFUSALS = {"Bad user name or password", "Not authorized", "Bad authentication method"}
TAG_SIZE = 32
_ACK = struct.Struct("<8sQ")
_FOLLOWS = struct.Struct("<Q")
_DROPPED = struct.Struct("<8sI")


def broker(url: str) -> tuple[str, int, bool, Optional[str], Optional[str], str]:
    """(host, port, tls, user, password, topic prefix) of an ``mqtt://`` or ``mqtts://`` URL."""
    parts = parse_url(url)
    tls = parts.scheme == "mqtts"
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if any(c in prefix for c in "+#"):
        raise ConfigError(f"MQTT topic prefix {prefix!r} must not contain wildcards")
    return (parts.hostname, parts.port or (8883 if tls else 1883), tls,
            urllib.parse.unquote(parts.username) if parts.username else None,
            urllib.parse.unquote(parts.password) if parts.password else None, prefix)


def topic(prefix: str, camera_id: str, kind: str) -> str:
    return f"{prefix}/{camera_id}/{kind}"


def frame_message(secret: bytes, camera_id: str, stream_id: bytes, packet: bytes,
                  follows: Optional[int]) -> bytes:
    prev = _FOLLOWS.pack(wire.NO_SEQUENCE if follows is None else follows)
    tag = auth.frame_tag(secret, camera_id, stream_id, frame_tag_input(packet, follows))
    return packet + stream_id + prev + tag


def parse_frame_message(payload: bytes) -> tuple[bytes, bytes, Optional[int], bytes]:
    """(packet, stream id, previous sequence, tag); BitstreamError unless one packet plus trailer."""
    size = bitstream.packet_size(payload[: bitstream.PREFIX_SIZE])
    if len(payload) != size + wire.STREAM_ID_SIZE + _FOLLOWS.size + TAG_SIZE:
        raise BitstreamError(f"frame message of {len(payload)} bytes does not hold one packet of {size}")
    (prev,) = _FOLLOWS.unpack_from(payload, size + 8)
    return (payload[:size], payload[size : size + 8], None if prev == wire.NO_SEQUENCE else prev,
            payload[size + 16 :])


def frame_tag_input(packet: bytes, follows: Optional[int]) -> bytes:
    """What the frame tag covers besides camera and stream id."""
    return packet + _FOLLOWS.pack(wire.NO_SEQUENCE if follows is None else follows)


def ack_message(secret: bytes, camera_id: str, stream_id: bytes, sequence: int) -> bytes:
    return _ACK.pack(stream_id, sequence) + auth.ack_tag(secret, camera_id, stream_id, sequence)


def parse_ack_message(secret: bytes, camera_id: str, payload: bytes) -> Optional[tuple[bytes, int]]:
    """(stream id, sequence) of a genuine ack, None for anything else."""
    if len(payload) != _ACK.size + TAG_SIZE:
        return None
    stream_id, seq = _ACK.unpack_from(payload)
    if not auth.verify(auth.ack_tag(secret, camera_id, stream_id, seq), payload[_ACK.size :]):
        return None
    return stream_id, seq


def dropped_message(secret: bytes, camera_id: str, stream_id: bytes, count: int) -> bytes:
    count = min(count, 0xFFFFFFFF)
    return _DROPPED.pack(stream_id, count) + auth.dropped_tag(secret, camera_id, stream_id, count)


def parse_dropped_message(secret: bytes, camera_id: str, payload: bytes) -> Optional[int]:
    if len(payload) != _DROPPED.size + TAG_SIZE:
        return None
    stream_id, count = _DROPPED.unpack_from(payload)
    if not auth.verify(auth.dropped_tag(secret, camera_id, stream_id, count), payload[_DROPPED.size :]):
        return None
    return count


def new_client(client_id: str, user: Optional[str], password: Optional[str], tls: bool,
               pin: Optional[str] = None, cafile: Optional[str] = None):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=mqtt.MQTTv311)
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set_context(auth.client_context(pin, cafile))
        if pin:
            client.tls_insecure_set(True)  # the pin, checked once connected, replaces name checks
    return client


class MqttLink(Link):
    def __init__(self, config: LinkConfig):
        super().__init__(config)
        self.host, self.port, self.tls, self.user, self.password, self.prefix = broker(config.url)
        self._client = None
        self._cond = threading.Condition()
        self._state = "idle"  # idle -> connecting -> subscribed | failed | refused, down
        self._why = ""
        self._acked: Optional[int] = None
        self._follows: Optional[int] = None  # last frame sent on this broker connection

    def _topic(self, kind: str) -> str:
        return topic(self.prefix, self.config.camera_id, kind)

    def connect(self) -> Optional[int]:
        cfg = self.config
        client = new_client(f"edgecodec-edge-{cfg.camera_id}-{os.urandom(3).hex()}", self.user,
                            self.password, self.tls, cfg.tls_pin, cfg.tls_ca)
        client.will_set(self._topic("status"), b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.max_queued_messages_set(256)
        client.connect_timeout = cfg.connect_timeout
        self._client = client
        self._state, self._acked, self._follows = "connecting", None, None
        try:
            client.connect(self.host, self.port, keepalive=15)
        except (OSError, ValueError) as exc:
            self.close()
            raise LinkError(f"cannot reach MQTT broker {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._state != "connecting", cfg.connect_timeout)
            state, why = self._state, self._why
        if state != "subscribed":
            self.close()
            error = AuthRefused if state == "refused" else LinkError
            raise error(f"MQTT broker {self.host}:{self.port}: {why or 'timed out'}")
        client.publish(self._topic("status"), b"online", qos=1, retain=True)
        return None  # the broker cannot tell what the server stored; duplicates are dropped there

    def _set(self, state: str, why: str = "") -> None:
        with self._cond:
            if self._state in ("failed", "refused", "down") and state != "idle":
                return
            self._state, self._why = state, why or self._why
            self._cond.notify_all()

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            if getattr(reason, "getName", lambda: str(reason))() in AUTH_REFUSALS:
                self._set("refused", f"refused the credentials in the server URL ({reason})")
            else:
                self._set("failed", f"connection refused: {reason}")
            return
        if self.tls and self.config.tls_pin:
            try:
                auth.check_pin(client.socket(), self.config.tls_pin)
            except auth.AuthError as exc:
                self._set("refused", str(exc))
                client.disconnect()
                return
        client.subscribe(self._topic("ack"), qos=1)

    def _on_subscribe(self, client, userdata, mid, reasons, properties=None) -> None:
        if any(r.is_failure for r in reasons):
            self._set("failed", "the broker refused the ack subscription")
        else:
            self._set("subscribed")

    def _on_disconnect(self, client, userdata, flags, reason, properties=None) -> None:
        self._set("down", f"disconnected from the broker ({reason})")

    def _on_message(self, client, userdata, msg) -> None:
        parsed = parse_ack_message(self.config.secret, self.config.camera_id, msg.payload)
        if parsed is None or parsed[0] != self.config.stream_id:
            log.debug("ignoring an ack that is not for this stream or not signed by the server")
            return
        with self._cond:
            self._acked = parsed[1] if self._acked is None else max(self._acked, parsed[1])
            self._cond.notify_all()

    def _publish(self, kind: str, payload: bytes) -> None:
        import paho.mqtt.client as mqtt

        with self._cond:
            if self._state != "subscribed" or self._client is None:
                raise LinkError(self._why or "not connected")
        info = self._client.publish(self._topic(kind), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise LinkError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")

    def send_frame(self, sequence: int, packet: bytes) -> None:
        cfg = self.config
        self._publish("frame", frame_message(cfg.secret, cfg.camera_id, cfg.stream_id, packet, self._follows))
        self._follows = sequence

    def send_dropped(self, count: int) -> None:
        cfg = self.config
        self._publish("dropped", dropped_message(cfg.secret, cfg.camera_id, cfg.stream_id, count))

    def keepalive(self) -> None:
        pass  # paho pings the broker itself

    def poll(self, timeout: float) -> Optional[int]:
        with self._cond:
            before = self._acked
            if timeout > 0:
                self._cond.wait_for(lambda: self._acked != before or self._state != "subscribed", timeout)
            if self._state != "subscribed":
                raise LinkError(self._why or "not connected")
            return self._acked

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.publish(self._topic("status"), b"offline", qos=1, retain=True)
                client.disconnect()
            except Exception:  # closing must not raise
                pass
            client.loop_stop()
        with self._cond:
            self._state = "idle"
