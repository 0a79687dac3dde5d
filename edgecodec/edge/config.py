"""The edge's configuration: one table of options, read from a TOML file and overridden by CLI flags.

Each section is a frozen dataclass whose fields carry their default, flag, help and check; the
TOML reader, the argparse flags and ``--check-config`` are all generated from them
(``edgecodec.options``, shared with the server's table), so an option is declared in exactly one
place. Configuration is plain data: nothing here opens a camera.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import socket
import urllib.parse
from typing import Optional

from edgecodec.errors import EdgecodecError
from edgecodec.options import OptionTable, between, host_port, opt  # noqa: F401  (opt, between: for callers)
from edgecodec.transport.base import DEFAULT_PORT


def _camera_id(value: str) -> Optional[str]:
    from edgecodec.transport.wire import check_camera_id

    try:
        check_camera_id(value)
    except EdgecodecError as exc:
        return str(exc)
    return None


def _server_url(value: str) -> Optional[str]:
    from edgecodec.transport.base import parse_url

    if value == NO_SERVER:
        return None
    try:
        parse_url(value)
    except EdgecodecError as exc:
        return str(exc)
    return None


def _source(value: str) -> Optional[str]:
    if not value:
        return "must not be empty"
    if value == "synthetic" or value.isdigit() or "://" in value or value.startswith("/dev/video"):
        return None
    if not pathlib.Path(value).is_file():
        return ("is neither 'synthetic', a camera index, a /dev/video* device, a URL, "
                "nor an existing video file")
    return None


def _tls_pin(value: str) -> Optional[str]:
    if not value:
        return None
    from edgecodec.transport.auth import parse_pin

    try:
        parse_pin(value)
    except EdgecodecError as exc:
        return str(exc)
    return None


def _default_camera_id() -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return name.strip("-._")[:64] or "camera"


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    id: str = opt(_default_camera_id(), "--camera-id", "id the server knows this camera by "
                  "(default: the host name)", _camera_id, "ID")
    source: str = opt("synthetic", "--source", "'synthetic' (a moving test scene), a camera index or "
                      "/dev/videoN, a video file, or an rtsp:// or http:// URL", _source, "SOURCE")
    width: int = opt(640, "--width", "frame width in pixels", between(16, 4096), "PX")
    height: int = opt(480, "--height", "frame height in pixels", between(16, 4096), "PX")
    fps: float = opt(30.0, "--fps", "frames per second to capture", between(0.1, 240), "FPS")
    loop: bool = opt(False, "--loop", "restart a video file when it ends")


ENCODERS = ("auto", "int8", "float")


ANALYSES = ("auto", "full", "fast")


def _encoder(value: str) -> Optional[str]:
    return None if value in ENCODERS else f"must be one of {', '.join(ENCODERS)}"


def _analysis(value: str) -> Optional[str]:
    return None if value in ANALYSES else f"must be one of {', '.join(ANALYSES)}"


@dataclasses.dataclass(frozen=True)
class EncodeConfig:
    quality: int = opt(4, "--quality", "quality when no target bitrate is set (0 = smallest)",
                       between(0, 255), "Q")
    target_kbps: float = opt(0.0, "--target-kbps", "target bitrate in kbit/s; the quality is chosen "
                             "per frame to stay under it (0 = fixed quality)", between(0, 1e6), "KBPS")
    model: str = opt("", "--model", "model folder (default: the bundled model)", None, "DIR")
    threads: int = opt(2, "--threads", "encoder threads", between(1, 64), "N")
    encoder: str = opt("auto", "--encoder", "'int8' (the quantized model meant for ARM boards), 'float' "
                       "(its float twin: same bitstream, faster on x86 CPUs without int8 dot products), "
                       "or 'auto': time both at start-up and keep the faster", _encoder, "KIND")
    analysis: str = opt("auto", "--analysis", "'full', 'fast' (the model's narrower analysis: about half "
                        "the work, a lower PSNR for the bits; the same decoder reads it) or 'auto': the "
                        "full one unless its encode needs more than half the frame period", _analysis, "KIND")
    key_interval: float = opt(2.0, "--key-interval", "stream mode: a key frame (decodable on its own) at "
                              "least this often (s); the frames between are delta frames that re-send only "
                              "what changed. A viewer who joins waits at most this long for a picture",
                              between(0.05, 3600), "S")
    intra: bool = opt(False, "--intra", "code every frame as a key frame (no delta frames): more bits "
                      "on a fixed camera, but any frame decodes on its own")
    delegate: str = opt("", "--delegate", "run the int8 encoder on this TFLite delegate library (e.g. "
                        "libedgetpu.so.1 for a Coral Edge TPU; the model's fixed-shape encoders are used at "
                        "their sizes); when it cannot be loaded, the CPU, with a warning", None, "LIB")


@dataclasses.dataclass(frozen=True)
class ConnectionConfig:
    server: str = opt(f"tcp://127.0.0.1:{DEFAULT_PORT}", "--server", "where to send frames: tcp://HOST:PORT, "
                      "tls://HOST:PORT, mqtt://HOST:PORT[/PREFIX], mqtts://..., or 'none' (serial bridge only)",
                      _server_url, "URL")
    secret_file: str = opt("", "--secret-file", "file holding this camera's secret", None, "PATH")
    secret: str = opt("", "--secret", "the secret itself (prefer --secret-file: flags are visible "
                      "to other users)", None, "TEXT")
    tls_pin: str = opt("", "--tls-pin", "SHA-256 fingerprint of the server certificate to trust "
                       "(see 'edgecodec serve --show-pin')", _tls_pin, "sha256:HEX")
    tls_ca: str = opt("", "--tls-ca", "CA bundle to verify the server with instead of a pin", None, "PATH")
    ack_timeout: float = opt(5.0, "--ack-timeout", "reconnect when sent frames stay unacknowledged "
                             "this long (s)", between(0.5, 600), "S")
    connect_timeout: float = opt(5.0, "--connect-timeout", "give up a connection attempt after (s)",
                                 between(0.1, 120), "S")
    retry_max: float = opt(10.0, "--retry-max", "longest wait between reconnection attempts (s)",
                           between(0.1, 3600), "S")
    auth_retries: int = opt(3, "--auth-retries", "exit with an error once the server refuses this "
                            "camera's secret or id (or fails its own proof) this many times in a row; "
                            "an unreachable server is retried for ever", between(1, 1000), "N")


@dataclasses.dataclass(frozen=True)
class SpoolConfig:
    dir: str = opt("", "--spool-dir", "where frames wait while the server is unreachable (default: "
                   "$STATE_DIRECTORY, else ~/.local/state/edgecodec/CAMERA)", None, "DIR")
    max_mb: float = opt(512.0, "--spool-max-mb", "spool size limit; the oldest frames go first",
                        between(1, 1e7), "MB")


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    stall_timeout: float = opt(10.0, "--stall-timeout", "stop the systemd watchdog pings when a stage "
                               "makes no progress this long (s)", between(1, 3600), "S")
    drain_timeout: float = opt(3.0, "--drain-timeout", "on SIGTERM, how long to keep sending before the "
                               "rest goes to the spool (s)", between(0, 60), "S")
    status_interval: float = opt(10.0, "--status-interval", "log a status line this often (s; 0 = never)",
                                 between(0, 86400), "S")
    metrics_listen: str = opt("", "--metrics-listen", "serve the edge's figures for Prometheus at "
                              "http://HOST:PORT/metrics (empty = off; 127.0.0.1:9478 keeps them on this host)",
                              host_port, "HOST:PORT")


BRIDGE_MODES = ("trigger", "all", "off")


def _bridge_mode(value: str) -> Optional[str]:
    return None if value in BRIDGE_MODES else f"must be one of {', '.join(BRIDGE_MODES)}"


@dataclasses.dataclass(frozen=True)
class BridgeConfig:
    port: str = opt("", "--bridge-port", "serial port or pyserial URL of the companion microcontroller "
                    "(/dev/ttyAMA0, socket://HOST:PORT; empty = no bridge)", None, "PORT")
    baudrate: int = opt(115200, "--bridge-baudrate", "serial line rate", between(300, 4_000_000), "BAUD")
    mode: str = opt("trigger", "--bridge-mode", "'trigger': send a frame over serial when the MCU "
                    "triggers; 'all': every encoded frame also over serial (newest wins); 'off'",
                    _bridge_mode, "MODE")


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    encode: EncodeConfig = dataclasses.field(default_factory=EncodeConfig)
    link: ConnectionConfig = dataclasses.field(default_factory=ConnectionConfig)
    spool: SpoolConfig = dataclasses.field(default_factory=SpoolConfig)
    service: ServiceConfig = dataclasses.field(default_factory=ServiceConfig)
    bridge: BridgeConfig = dataclasses.field(default_factory=BridgeConfig)


def _options():
    return TABLE.options()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option; flags given on the command line override the file."""
    TABLE.add_arguments(parser)


def read_file(path: str) -> tuple[dict, list[str]]:
    """Parse a TOML config into {section: {key: value}}; return it with a list of problems."""
    return TABLE.read_file(path)


def load(path: Optional[str] = None, args: Optional[argparse.Namespace] = None) -> EdgeConfig:
    """Defaults, then the TOML file, then CLI flags; raise ConfigError listing every problem."""
    return TABLE.load(path, args)


NO_SERVER = "none"  # [link] server = "none": frames leave over the serial bridge only


def network_enabled(config: EdgeConfig) -> bool:
    return config.link.server != NO_SERVER


def _cross_checks(config: EdgeConfig) -> list[str]:
    errors = []
    link = config.link
    if not network_enabled(config):
        if not config.bridge.port or config.bridge.mode != "all":
            errors.append('[link] server = "none" sends frames over the serial bridge only: it needs '
                          '[bridge] port and mode = "all"')
        return errors
    if not link.secret and not link.secret_file:
        errors.append("[link] needs secret_file (or secret): the server only accepts cameras that "
                      "prove their secret")
    if link.secret and link.secret_file:
        errors.append("[link] give either secret or secret_file, not both")
    scheme = urllib.parse.urlsplit(link.server).scheme
    if (link.tls_pin or link.tls_ca) and scheme not in ("tls", "mqtts"):
        errors.append(f"[link] tls_pin/tls_ca only apply to tls:// and mqtts:// servers, not {scheme}://")
    if link.tls_pin and link.tls_ca:
        errors.append("[link] give either tls_pin or tls_ca, not both")
    return errors


def secret(config: EdgeConfig) -> bytes:
    from edgecodec.transport.auth import check_secret, read_secret_file

    if config.link.secret_file:
        return read_secret_file(config.link.secret_file)
    return check_secret(config.link.secret, "[link] secret")


def spool_dir(config: EdgeConfig, environ=None) -> pathlib.Path:
    """Where the spool lives: the configured folder, systemd's StateDirectory, or the user's state dir."""
    env = os.environ if environ is None else environ
    if config.spool.dir:
        return pathlib.Path(config.spool.dir)
    if env.get("STATE_DIRECTORY"):
        return pathlib.Path(env["STATE_DIRECTORY"].split(":")[0])
    base = pathlib.Path(env.get("XDG_STATE_HOME") or pathlib.Path.home() / ".local" / "state")
    return base / "edgecodec" / config.camera.id


def to_toml(config: EdgeConfig) -> str:
    """The effective configuration as TOML (secrets masked): what ``--check-config`` prints."""
    return TABLE.to_toml(config)


TABLE = OptionTable(EdgeConfig, _cross_checks)
SECTIONS: dict[str, type] = TABLE.sections
