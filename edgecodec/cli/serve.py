"""``edgecodec serve``: accept cameras over TCP/TLS and/or MQTT, store their frames, feed consumers.

SIGTERM or Ctrl-C stops it cleanly: pending acknowledgements are sent, watermarks written, and the
figures printed (``--json`` for a machine-readable report).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from edgecodec.server import config as server_config


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="receive camera streams (the server)",
        description="Accept edge cameras over TCP (optionally TLS) and/or an MQTT broker, authenticate "
                    "them with per-camera secrets, store their compressed frames once each, and hand "
                    "them to recorders and live views. Protocol: docs/protocol.md. "
                    "Exit codes: 0 ok, 1 error, 2 usage.")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file (sections [ingest] "
                   "[record] [http] [decode] [probe] [service]; every key is also a flag, which overrides it)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration, print it as TOML, exit")
    p.add_argument("--show-pin", action="store_true",
                   help="print the pin edges should use for --tls-cert, then exit")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print the final figures as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    options = p.add_argument_group("options (each also a key in the config file)")
    server_config.add_arguments(options)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from edgecodec.edge import journal
    from edgecodec.server.service import EdgeServer
    from edgecodec.transport import auth

    journal.setup(args.verbose, args.quiet)
    for flag, dest in (("--retain-days", "record.retain_days"), ("--retain-gb", "record.retain_gb")):
        value = vars(args).get(dest)  # on the command line 0 is a mistake; in the file it means "off"
        if value is not None and not (value > 0 and value < float("inf")):
            print(f"edgecodec serve: error: {flag} must be a positive number, not {value:g}", file=sys.stderr)
            return 2
    options = server_config.load(args.config, args)
    if args.show_pin:
        if not options.ingest.tls_cert:
            print("edgecodec serve: error: --show-pin needs --tls-cert", file=sys.stderr)
            return 2
        print(auth.certificate_pin(options.ingest.tls_cert))
        return 0
    problem = server_config.usage_problem(options)
    if problem:
        print(f"edgecodec serve: error: {problem}", file=sys.stderr)
        return 2
    if args.check_config:
        print(server_config.TABLE.to_toml(options), end="")
        print("# configuration OK")
        return 0
    config = server_config.server_config(options)
    server = EdgeServer(config)
    figures = asyncio.run(_serve(server, args.duration))
    if args.json:
        json.dump(figures, sys.stdout, indent=1)
        print()
    else:
        for cid, cam in figures["cameras"].items():
            counts = figures["ingest"].get(cid, {})
            print(f"{cid}: {cam['frames']} frames, {cam['fps']} frames/s, {cam['kbps']} kbit/s, "
                  f"{counts.get('duplicates', 0)} duplicates, {cam['dropped_on_edge']} dropped on the edge")
    return 0


async def _serve(server, duration) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    return await server.run(stop)
