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

from edgecodec.server.ingest import ServerLimits


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="receive camera streams (the server)",
        description="Accept edge cameras over TCP (optionally TLS) and/or an MQTT broker, authenticate "
                    "them with per-camera secrets, store their compressed frames once each, and hand "
                    "them to recorders and live views. Protocol: docs/protocol.md. "
                    "Exit codes: 0 ok, 1 error, 2 usage.")
    p.add_argument("--secrets", metavar="FILE",
                   help='TOML file with a [cameras] table of camera_id = "secret" lines (required)')
    p.add_argument("--listen", default="0.0.0.0:7878", metavar="HOST:PORT",
                   help="TCP address to accept cameras on (port 0: any free port; default 0.0.0.0:7878)")
    p.add_argument("--no-listen", action="store_true", help="no TCP listener (MQTT only)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate (chain)")
    p.add_argument("--tls-key", metavar="PEM", help="private key, if not in --tls-cert")
    p.add_argument("--show-pin", action="store_true",
                   help="print the pin edges should use for --tls-cert, then exit")
    p.add_argument("--mqtt", metavar="URL", help="also take frames from a broker: mqtt://[USER:PASS@]HOST:PORT[/PREFIX]")
    p.add_argument("--mqtt-ca", metavar="PEM", help="CA bundle for an mqtts:// broker")
    p.add_argument("--state-dir", metavar="DIR",
                   help="keep the per-camera duplicate watermarks here across restarts")
    limits = ServerLimits()
    p.add_argument("--max-connections", type=int, default=limits.max_connections, metavar="N",
                   help=f"connections accepted at once (default {limits.max_connections})")
    p.add_argument("--max-frame-kb", type=int, default=limits.max_packet >> 10, metavar="KB",
                   help=f"largest frame packet accepted (default {limits.max_packet >> 10})")
    p.add_argument("--idle-timeout", type=float, default=limits.idle_timeout, metavar="S",
                   help=f"close a connection silent this long (default {limits.idle_timeout:g})")
    p.add_argument("--record", metavar="DIR", help="record every camera's frames into DIR (edgecodec.recording)")
    p.add_argument("--record-rotate-mb", type=float, default=512, metavar="MB",
                   help="with --record: start a camera's next file past this size (default 512)")
    p.add_argument("--record-rotate-minutes", type=float, default=60, metavar="MIN",
                   help="with --record: start a camera's next file after this long (default 60)")
    p.add_argument("--retain-days", type=float, metavar="DAYS",
                   help="with --record: delete a camera's recording files once their last frame is older "
                        "than this (whole files, oldest first, never the one being written; default: keep)")
    p.add_argument("--retain-gb", type=float, metavar="GB",
                   help="with --record: delete a camera's oldest recording files while its files together "
                        "exceed this many GB (10^9 bytes; default: no limit)")
    p.add_argument("--http", metavar="HOST:PORT", help="serve the live view here (edgecodec.web)")
    p.add_argument("--http-users", metavar="FILE",
                   help='with --http: ask for a name and password from FILE\'s [viewers] table (name = "password")')
    p.add_argument("--http-tls", action="store_true",
                   help="with --http: serve the live view over HTTPS with --tls-cert / --tls-key")
    p.add_argument("--model", metavar="DIR", help="model folder for decoding consumers (default: bundled)")
    p.add_argument("--decode-threads", type=int, default=1, metavar="N",
                   help="threads for each decoding consumer (default 1)")
    p.add_argument("--decoder", choices=["auto", "full", "live"], default="auto",
                   help="synthesis for the live view and --probe: the model's faster live one (lower PSNR), "
                        "the full one, or auto: live where the model has one (default)")
    p.add_argument("--frame-log", metavar="FILE", help="append one JSON line per stored frame")
    p.add_argument("--probe", action="store_true",
                   help="decode the newest frame of each camera and report capture-to-decoded latency")
    p.add_argument("--probe-reference", choices=["synthetic"],
                   help="with --probe: also measure PSNR against the synthetic test scene")
    p.add_argument("--probe-camera", action="append", metavar="ID",
                   help="with --probe: only this camera (repeat for more; default: all)")
    p.add_argument("--probe-warmup", type=float, default=0.0, metavar="S",
                   help="with --probe: leave the first S seconds out of the figures")
    p.add_argument("--port-file", metavar="FILE", help="write the bound TCP port here once listening")
    p.add_argument("--status-interval", type=float, default=60.0, metavar="S",
                   help="log each camera's figures this often (0: never; default 60)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print the final figures as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from edgecodec.edge import journal
    from edgecodec.server.service import EdgeServer, ServerConfig
    from edgecodec.transport import auth

    journal.setup(args.verbose, args.quiet)
    if args.show_pin:
        if not args.tls_cert:
            print("edgecodec serve: error: --show-pin needs --tls-cert", file=sys.stderr)
            return 2
        print(auth.certificate_pin(args.tls_cert))
        return 0
    if not args.secrets:
        print("edgecodec serve: error: --secrets FILE is required", file=sys.stderr)
        return 2
    if (args.http_users or args.http_tls) and not args.http:
        print("edgecodec serve: error: --http-users and --http-tls need --http", file=sys.stderr)
        return 2
    if (args.retain_days is not None or args.retain_gb is not None) and not args.record:
        print("edgecodec serve: error: --retain-days and --retain-gb need --record", file=sys.stderr)
        return 2
    for flag, value in (("--retain-days", args.retain_days), ("--retain-gb", args.retain_gb)):
        if value is not None and not (value > 0 and value < float("inf")):
            print(f"edgecodec serve: error: {flag} must be a positive number, not {value:g}", file=sys.stderr)
            return 2
    if args.no_listen and not args.mqtt:
        print("edgecodec serve: error: --no-listen needs --mqtt", file=sys.stderr)
        return 2
    config = ServerConfig(
        secrets_file=args.secrets, listen=None if args.no_listen else args.listen,
        tls_cert=args.tls_cert, tls_key=args.tls_key, mqtt=args.mqtt, mqtt_ca=args.mqtt_ca,
        state_dir=args.state_dir,
        limits=ServerLimits(max_connections=args.max_connections, max_packet=args.max_frame_kb << 10,
                            idle_timeout=args.idle_timeout),
        frame_log=args.frame_log, probe=args.probe, probe_reference=args.probe_reference,
        probe_warmup_s=args.probe_warmup, probe_cameras=args.probe_camera,
        model=args.model, decode_threads=args.decode_threads, decoder=args.decoder, record=args.record, http=args.http,
        http_users=args.http_users, http_tls=args.http_tls,
        record_rotate_bytes=int(args.record_rotate_mb * (1 << 20)),
        record_rotate_seconds=args.record_rotate_minutes * 60,
        retain_days=args.retain_days, retain_gb=args.retain_gb,
        port_file=args.port_file, status_interval=args.status_interval)
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
