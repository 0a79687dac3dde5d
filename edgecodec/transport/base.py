"""The interface every edge-side transport implements, and the URL-scheme switch that picks one."""
from __future__ import annotations

import abc
import importlib
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from edgecodec.errors import ConfigError, EdgecodecError

DEFAULT_PORT = 7878
SCHEMES = {
    "tcp": ("edgecodec.transport.tcp", "TcpLink"),
    "tls": ("edgecodec.transport.tcp", "TcpLink"),
    "mqtt": ("edgecodec.transport.mqtt", "MqttLink"),
    "mqtts": ("edgecodec.transport.mqtt", "MqttLink"),
}


class LinkError(EdgecodecError):
    """The link is down or was refused; the sender reconnects later and spools meanwhile."""


class AuthRefused(LinkError):
    """The server (or the MQTT broker) refused this camera's credentials, or the server failed to prove
    its own: retrying will not fix it, so the sender gives up after a few attempts (``auth_retries``)."""


@dataclass(frozen=True)
class LinkConfig:
    """Where and as whom to connect; shared by all transports."""

    url: str
    camera_id: str
    secret: bytes
    model_id: bytes
    stream_id: bytes
    tls_pin: Optional[str] = None
    tls_ca: Optional[str] = None
    connect_timeout: float = 5.0
    io_timeout: float = 5.0


class Link(abc.ABC):
    """One authenticated connection from an edge to its server. Not thread-safe: one sender owns it."""

    def __init__(self, config: LinkConfig):
        self.config = config

    @abc.abstractmethod
    def connect(self) -> Optional[int]:
        """Connect and authenticate; return the last sequence the server already stored, if known."""

    @abc.abstractmethod
    def send_frame(self, sequence: int, packet: bytes) -> None:
        """Send one frame packet; raise LinkError if the link broke."""

    @abc.abstractmethod
    def send_dropped(self, count: int) -> None:
        """Tell the server how many frames were lost on the edge since the last report."""

    @abc.abstractmethod
    def keepalive(self) -> None:
        """Show the server the link is alive when there is nothing to send."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> Optional[int]:
        """Wait up to ``timeout`` s for acknowledgements; return the highest acked sequence so far."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the link; safe to call twice."""


def parse_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"server URL {url!r}: scheme must be one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"server URL {url!r}: invalid port") from None
    if not parts.hostname:
        raise ConfigError(f"server URL {url!r}: missing host")
    return parts


def open_link(config: LinkConfig) -> Link:
    module, name = SCHEMES[parse_url(config.url).scheme]
    return getattr(importlib.import_module(module), name)(config)
