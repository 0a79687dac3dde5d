"""``edgecodec edge``: capture, encode and stream frames to a server; the systemd service's command.

Options come from ``--config FILE`` (TOML) with any flag overriding it; ``--check-config`` validates
and prints the effective configuration. SIGTERM or Ctrl-C drains: frames already captured are
delivered or spooled before exit.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from edgecodec.edge import config as edge_config
from edgecodec.errors import ConfigError, EdgecodecError


def register(sub) -> None:
    p = sub.add_parser(
        "edge", help="stream a camera to a server (the edge service)",
        description="Capture frames, encode them on the edge and stream them to an edgecodec "
                    "server, spooling to disk while it is unreachable. Options come from --config "
                    "(TOML, sections [camera] [encode] [link] [spool] [service] [bridge]); flags "
                    "override it. Exit codes: 0 ok, 1 error, 2 usage.")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration (and the secret, spool folder and model), print it, exit")
    p.add_argument("-d", "--duration", type=float, metavar="S", help="stop after S seconds (default: run until stopped)")
    p.add_argument("--json", action="store_true", help="print the final figures as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    options = p.add_argument_group("options (each also a key in the config file)")
    edge_config.add_arguments(options)
    p.set_defaults(func=cmd_edge)


def check_config(config: edge_config.EdgeConfig) -> list[str]:
    """Deeper checks than parsing: the things the service will need at start."""
    problems = []
    try:
        if edge_config.network_enabled(config):
            edge_config.secret(config)
    except EdgecodecError as exc:
        problems.append(str(exc))
    folder = edge_config.spool_dir(config)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        problems.append(f"spool folder {folder} is not writable: {exc.strerror}")
    try:
        from edgecodec.models import ModelBundle

        bundle = ModelBundle.load(config.encode.model or None)
        if not config.encode.target_kbps and config.encode.quality not in bundle.qualities:
            problems.append(f"[encode] quality = {config.encode.quality}: this model has qualities "
                            f"{bundle.qualities[0]}..{bundle.qualities[-1]}")
        if config.encode.analysis == "fast" and not bundle.has_fast_encoder:
            problems.append(f"[encode] analysis = \"fast\": the model in {bundle.dir} has no fast encoder")
    except EdgecodecError as exc:
        problems.append(f"model: {exc}")
    problems += _check_bridge_port(config)
    return problems


def _check_bridge_port(config: edge_config.EdgeConfig) -> list[str]:
    """Open and close the MCU's serial port, so a wrong name is found before the service starts."""
    from edgecodec.edge.bridge import enabled

    if not enabled(config.bridge):
        return []
    from firmware_bridge import PortError, open_port

    try:
        open_port(config.bridge.port, config.bridge.baudrate).close()
    except PortError as exc:
        return [f"[bridge] port = {config.bridge.port!r}: {exc}"]
    return []


def cmd_edge(args: argparse.Namespace) -> int:
    from edgecodec.edge import journal

    journal.setup(args.verbose, args.quiet)
    config = edge_config.load(args.config, args)
    if args.check_config:
        problems = check_config(config)
        print(edge_config.to_toml(config), end="")
        print(f"# spool folder: {edge_config.spool_dir(config)}")
        if problems:
            raise ConfigError("configuration problems:\n  " + "\n  ".join(problems))
        print("# configuration OK")
        return 0

    from edgecodec.edge import service

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        figures = service.run(config, stop, duration=args.duration)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        json.dump(figures, sys.stdout, indent=1)
        print()
    return 0
