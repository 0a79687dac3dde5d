"""The server's configuration: one table of options, read from a TOML file (``edgecodec serve --config``)
and overridden by CLI flags, with the edge's machinery (``edgecodec.options``).

Every key is also a flag, and every flag ``edgecodec serve`` had before the table keeps its name.
``ServerConfig`` (``edgecodec.server.service``), what ``EdgeServer`` runs on, is built from it by
``server_config``; its defaults are this table's.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Optional

from edgecodec.options import OptionTable, between, host_port, one_of, opt
from edgecodec.server.ingest import ServerLimits
from edgecodec.transport.base import DEFAULT_PORT

_LIMITS = ServerLimits()
HTTP_DEFAULT_PORT = 8080
DECODERS = ("auto", "full", "live")


def _zero_or_positive(value: float) -> Optional[str]:
    return None if value == 0 or (value > 0 and math.isfinite(value)) else \
        "must be 0 (no limit) or a positive number"


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    secrets: str = opt("", "--secrets", 'TOML file with a [cameras] table of camera_id = "secret" lines '
                       "(required)", None, "FILE")
    listen: str = opt(f"0.0.0.0:{DEFAULT_PORT}", "--listen", "TCP address to accept cameras on (port 0: any "
                      "free port; '' or --no-listen: no TCP listener, MQTT only)", host_port, "HOST:PORT")
    tls_cert: str = opt("", "--tls-cert", "serve TLS with this certificate (chain)", None, "PEM")
    tls_key: str = opt("", "--tls-key", "private key, if not in --tls-cert", None, "PEM")
    mqtt: str = opt("", "--mqtt", "also take frames from a broker: mqtt://[USER:PASS@]HOST:PORT[/PREFIX]",
                    None, "URL")
    mqtt_ca: str = opt("", "--mqtt-ca", "CA bundle for an mqtts:// broker", None, "PEM")
    state_dir: str = opt("", "--state-dir", "keep the per-camera duplicate watermarks here across restarts",
                         None, "DIR")
    max_connections: int = opt(_LIMITS.max_connections, "--max-connections", "connections accepted at once",
                               between(1, 1_000_000), "N")
    max_frame_kb: int = opt(_LIMITS.max_packet >> 10, "--max-frame-kb", "largest frame packet accepted (KiB)",
                            between(1, 1 << 21), "KB")
    idle_timeout: float = opt(_LIMITS.idle_timeout, "--idle-timeout", "close a connection silent this long (s)",
                              between(0.1, 86400), "S")


@dataclasses.dataclass(frozen=True)
class RecordOptions:
    dir: str = opt("", "--record", "record every camera's frames into DIR (edgecodec.recording; "
                   "empty: no recording)", None, "DIR")
    rotate_mb: float = opt(512.0, "--record-rotate-mb", "with --record: start a camera's next file past "
                           "this size", between(0.001, 1e7), "MB")
    rotate_minutes: float = opt(60.0, "--record-rotate-minutes", "with --record: start a camera's next "
                                "file after this long", between(0.01, 1e6), "MIN")
    retain_days: float = opt(0.0, "--retain-days", "with --record: delete a camera's recording files once "
                             "their last frame is older than this (whole files, oldest first, never the one "
                             "being written; 0: keep)", _zero_or_positive, "DAYS")
    retain_gb: float = opt(0.0, "--retain-gb", "with --record: delete a camera's oldest recording files "
                           "while its files together exceed this many GB (10^9 bytes; 0: no limit)",
                           _zero_or_positive, "GB")


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    listen: str = opt("", "--http", "serve the live view and /metrics here (edgecodec.web; empty: off)",
                      host_port, "HOST:PORT")
    users: str = opt("", "--http-users", 'with --http: ask for a name and password from FILE\'s [viewers] '
                     'table (name = "password")', None, "FILE")
    tls: bool = opt(False, "--http-tls", "with --http: serve the live view over HTTPS with --tls-cert / "
                    "--tls-key")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    model: str = opt("", "--model", "model folder for decoding consumers (default: bundled)", None, "DIR")
    threads: int = opt(1, "--decode-threads", "threads for each decoding consumer", between(1, 64), "N")
    decoder: str = opt("auto", "--decoder", "synthesis for the live view and --probe: 'live' (the model's "
                       "faster one, lower PSNR), 'full', or 'auto': live where the model has one",
                       one_of(*DECODERS), "KIND")


@dataclasses.dataclass(frozen=True)
class ProbeOptions:
    enabled: bool = opt(False, "--probe", "decode the newest frame of each camera and report "
                        "capture-to-decoded latency")
    reference: str = opt("", "--probe-reference", "with --probe: 'synthetic' also measures PSNR against the "
                         "synthetic test scene", one_of("", "synthetic"), "SCENE")
    cameras: list = opt([], "--probe-camera", "with --probe: only these cameras (default: all)", None, "ID")
    warmup: float = opt(0.0, "--probe-warmup", "with --probe: leave the first S seconds out of the figures",
                        between(0, 86400), "S")


@dataclasses.dataclass(frozen=True)
class ServiceOptions:
    frame_log: str = opt("", "--frame-log", "append one JSON line per stored frame", None, "FILE")
    port_file: str = opt("", "--port-file", "write the bound TCP port here once listening", None, "FILE")
    status_interval: float = opt(60.0, "--status-interval", "log each camera's figures this often "
                                 "(s; 0: never)", between(0, 86400), "S")


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    ingest: IngestOptions = dataclasses.field(default_factory=IngestOptions)
    record: RecordOptions = dataclasses.field(default_factory=RecordOptions)
    http: HttpOptions = dataclasses.field(default_factory=HttpOptions)
    decode: DecodeOptions = dataclasses.field(default_factory=DecodeOptions)
    probe: ProbeOptions = dataclasses.field(default_factory=ProbeOptions)
    service: ServiceOptions = dataclasses.field(default_factory=ServiceOptions)


TABLE = OptionTable(ServerOptions)
SECTIONS = TABLE.sections
DEFAULTS = ServerOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option, plus ``--no-listen`` (the same as ``--listen ''``)."""
    TABLE.add_arguments(parser)
    parser.add_argument("--no-listen", dest="ingest.listen", action="store_const", const="",
                        default=argparse.SUPPRESS, help="no TCP listener (MQTT only); [ingest] listen = \"\"")


def load(path: Optional[str] = None, args: Optional[argparse.Namespace] = None) -> ServerOptions:
    """Defaults, then the TOML file, then CLI flags; raise ConfigError listing every problem."""
    return TABLE.load(path, args)


def usage_problem(options: ServerOptions) -> Optional[str]:
    """The first combination of options that cannot work together, in the words of the flags."""
    if not options.ingest.secrets:
        return "--secrets FILE is required"
    if (options.http.users or options.http.tls) and not options.http.listen:
        return "--http-users and --http-tls need --http"
    if (options.record.retain_days or options.record.retain_gb) and not options.record.dir:
        return "--retain-days and --retain-gb need --record"
    if not options.ingest.listen and not options.ingest.mqtt:
        return "--no-listen needs --mqtt"
    return None


def server_config(options: ServerOptions):
    """The ``ServerConfig`` that ``EdgeServer`` runs on."""
    from edgecodec.server.service import ServerConfig

    i, r, h, d, p, s = (options.ingest, options.record, options.http, options.decode, options.probe,
                        options.service)
    return ServerConfig(
        secrets_file=i.secrets, listen=i.listen or None, tls_cert=i.tls_cert or None,
        tls_key=i.tls_key or None, mqtt=i.mqtt or None, mqtt_ca=i.mqtt_ca or None,
        state_dir=i.state_dir or None,
        limits=ServerLimits(max_connections=i.max_connections, max_packet=i.max_frame_kb << 10,
                            idle_timeout=i.idle_timeout),
        frame_log=s.frame_log or None, probe=p.enabled, probe_reference=p.reference or None,
        probe_warmup_s=p.warmup, probe_cameras=list(p.cameras) or None,
        model=d.model or None, decode_threads=d.threads, decoder=d.decoder,
        record=r.dir or None, record_rotate_bytes=int(r.rotate_mb * (1 << 20)),
        record_rotate_seconds=r.rotate_minutes * 60,
        retain_days=r.retain_days or None, retain_gb=r.retain_gb or None,
        http=h.listen or None, http_users=h.users or None, http_tls=h.tls,
        port_file=s.port_file or None, status_interval=s.status_interval)
