"""``edgecodec bridge ping | monitor | send | send-file``: talk to the camera's microcontroller.

A thin shell over ``firmware_bridge.Link``: every failure (no port, no answer, garbage on the
line, a rejected frame) becomes one line on stderr and exit code 1; usage errors exit 2.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from edgecodec.cli.progress import Progress
from edgecodec.errors import EdgecodecError

TRIGGER_SOURCES = ["other", "pir", "gpio", "timer", "manual", "radio"]
REQUESTABLE = ["hello", "telemetry", "status"]


def _quality_arg(text: str) -> int:
    from firmware_bridge import QUALITY_UNCHANGED

    if text == "keep":
        return QUALITY_UNCHANGED
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a quality: {text!r} (0..254 or 'keep')") from None
    if not 0 <= value < QUALITY_UNCHANGED:
        raise argparse.ArgumentTypeError(f"quality {value} outside 0..254")
    return value

def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", help="serial port or pyserial URL (/dev/ttyUSB0, socket://host:port, loop://)")
    p.add_argument("-b", "--baud", type=int, default=115200, help="baud rate (default 115200)")
    p.add_argument("-t", "--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for the device (default 5)")
    p.add_argument("--json", action="store_true", help="print results as JSON")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bridge", help="talk to the companion microcontroller over a serial link",
        description="Talk to the camera's companion microcontroller over the firmware bridge protocol "
                    "(firmware_bridge/PROTOCOL.md). Exit codes: 0 ok, 1 failure, 2 usage.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("ping", help="exchange HELLO; print the device, its limits and the round trip")
    _common(p)
    p.set_defaults(func=cmd_ping)

    p = actions.add_parser("monitor", help="print every message from the device")
    _common(p)
    p.add_argument("-d", "--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("-n", "--count", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--save-dir", metavar="DIR", help="write frames received from the device here")
    p.set_defaults(func=cmd_monitor)

    p = actions.add_parser("send", help="send one command and wait for its acknowledgement",
                           description="Send one command: trigger, quality, telemetry, status or request.")
    _common(p)
    what = p.add_subparsers(dest="message", metavar="MESSAGE")
    what.required = True
    q = what.add_parser("trigger", help="a capture trigger")
    q.add_argument("--source", choices=TRIGGER_SOURCES, default="manual")
    q.add_argument("--channel", type=int, default=0)
    q = what.add_parser("quality", help="set quality and/or target bitrate")
    q.add_argument("quality", type=_quality_arg, help="quality level 0..254, or 'keep' to change only the bitrate")
    q.add_argument("--bitrate", type=int, default=0, metavar="BPS", help="target bits per second (0: none)")
    q = what.add_parser("telemetry", help="battery, temperature and key=value readings")
    q.add_argument("--battery-mv", type=int)
    q.add_argument("--battery-pct", type=int)
    q.add_argument("--temperature", type=float, metavar="C")
    q.add_argument("values", nargs="*", metavar="KEY=VALUE")
    q = what.add_parser("status", help="free-form key=value status")
    q.add_argument("values", nargs="+", metavar="KEY=VALUE")
    q = what.add_parser("request", help="ask the device for a message and print it")
    q.add_argument("what", choices=REQUESTABLE)
    for q in what.choices.values():  # also accept --json after the message
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print results as JSON")
    p.set_defaults(func=cmd_send)

    p = actions.add_parser("send-file", help="transfer a file (e.g. a .ecc frame) in acknowledged chunks")
    _common(p)
    p.add_argument("file", help="the file to send")
    p.add_argument("--chunk", type=int, metavar="BYTES", help="fixed chunk size (default: adaptive)")
    p.set_defaults(func=cmd_send_file, timeout=60.0)


# -- helpers ------------------------------------------------------------------------------------


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EdgecodecError(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _describe(msg) -> dict:
    from dataclasses import fields

    out = {"type": type(msg).__name__.lower()}
    for f in fields(msg):
        value = getattr(msg, f.name)
        out[f.name] = value.hex() if isinstance(value, bytes) else value
    return out


def _silence(link, port: str, timeout: float) -> EdgecodecError:
    """The error for a device that never answered, telling garbage from silence."""
    stats = link.stats
    if stats["rx_bytes"] and not stats["rx_frames"]:
        return EdgecodecError(f"{port}: received {stats['rx_bytes']} bytes but no valid frame in {timeout:g} s "
                              "(wrong baud rate, or not a bridge device?)")
    return EdgecodecError(f"{port}: no answer from the device within {timeout:g} s")


def _open(args, **options):
    from firmware_bridge import Link

    return Link(args.port, args.baud, name="edgecodec-cli", heartbeat_interval=0, **options)


def _run(func, args) -> int:
    from firmware_bridge import BridgeError

    try:
        return func(args)
    except BridgeError as exc:
        raise EdgecodecError(str(exc)) from None
    except ValueError as exc:  # e.g. a key/value too long for the protocol
        raise EdgecodecError(str(exc)) from None


def _print(args, text: str, record: dict) -> None:
    print(json.dumps(record) if args.json else text, flush=True)


# -- actions ------------------------------------------------------------------------------------


def cmd_ping(args) -> int:
    return _run(_ping, args)


def _ping(args) -> int:
    from firmware_bridge import LinkTimeout, MsgType
    from firmware_bridge.messages import ROLES

    with _open(args) as link:
        try:
            link.wait_peer(args.timeout)
            t0 = time.perf_counter()
            hello = link.request(MsgType.HELLO, timeout=args.timeout)
            rtt_ms = 1000 * (time.perf_counter() - t0)
        except LinkTimeout:
            raise _silence(link, args.port, args.timeout) from None
    record = {"port": args.port, "name": hello.name, "role": ROLES.get(hello.role, str(hello.role)),
              "protocol_version": 1, "max_payload": hello.max_payload, "max_frame": hello.max_frame,
              "window": hello.window, "boot_id": hello.boot_id, "rtt_ms": round(rtt_ms, 2)}
    _print(args, f"{args.port}: {record['name'] or '(unnamed)'} ({record['role']}), max payload "
                 f"{hello.max_payload} B, max frame {hello.max_frame} B, window {hello.window}, "
                 f"round trip {rtt_ms:.1f} ms", record)
    return 0


def cmd_monitor(args) -> int:
    return _run(_monitor, args)


def _monitor(args) -> int:
    import queue

    events: queue.Queue = queue.Queue(maxsize=256)
    save_dir = pathlib.Path(args.save_dir) if args.save_dir else None

    from firmware_bridge import LinkHandler

    class Queued(LinkHandler):  # every message and frame, in arrival order, for the loop below
        def on_message(self, msg) -> None:
            events.put(("message", msg))

        def on_frame(self, data: bytes) -> None:
            events.put(("frame", data))

    with _open(args, handler=Queued()) as link:
        end = time.monotonic() + args.duration if args.duration else None
        count, frames = 0, 0
        try:
            while (end is None or time.monotonic() < end) and (args.count is None or count < args.count):
                try:
                    kind, item = events.get(timeout=0.1 if end is None else max(0.01, min(0.1, end - time.monotonic())))
                except queue.Empty:
                    continue
                count += 1
                if kind == "frame":
                    record = {"type": "frame", "bytes": len(item)}
                    if save_dir is not None:
                        save_dir.mkdir(parents=True, exist_ok=True)
                        path = save_dir / f"frame-{frames:05d}.ecc"
                        path.write_bytes(item)
                        record["saved"] = str(path)
                    frames += 1
                    _print(args, f"frame {len(item)} bytes" + (f" -> {record['saved']}" if "saved" in record else ""),
                           record)
                else:
                    record = _describe(item)
                    text = " ".join(f"{k}={v}" for k, v in record.items() if k != "type")
                    _print(args, f"{record['type']} {text}", record)
        except KeyboardInterrupt:
            pass
        if link.stats["rx_frames"] == 0:
            raise _silence(link, args.port, args.duration or 0)
    return 0


def cmd_send(args) -> int:
    return _run(_send, args)


def _send(args) -> int:
    from firmware_bridge import LinkTimeout, MsgType, SetQuality, Status, Telemetry, Trigger

    if args.message == "trigger":
        msg = Trigger(TRIGGER_SOURCES.index(args.source), args.channel, 0)
    elif args.message == "quality":
        msg = SetQuality(args.quality, args.bitrate)
    elif args.message == "telemetry":
        msg = Telemetry(args.battery_mv, args.battery_pct, args.temperature, _pairs(args.values))
    elif args.message == "status":
        msg = Status(_pairs(args.values))
    else:
        msg = None
    if msg is not None:
        msg.pack()  # validate before touching the port
    with _open(args) as link:
        try:
            link.wait_peer(args.timeout)
        except LinkTimeout:
            raise _silence(link, args.port, args.timeout) from None
        if msg is None:
            answer = link.request({"hello": MsgType.HELLO, "telemetry": MsgType.TELEMETRY,
                                   "status": MsgType.STATUS}[args.what], timeout=args.timeout)
            record = _describe(answer)
            _print(args, f"{record['type']} " + " ".join(f"{k}={v}" for k, v in record.items() if k != "type"),
                   record)
            return 0
        t0 = time.perf_counter()
        ok = link.send(msg, timeout=args.timeout)
        ms = 1000 * (time.perf_counter() - t0)
    if not ok:
        raise EdgecodecError(f"{args.port}: the device did not acknowledge the {args.message} command")
    _print(args, f"{args.message}: acknowledged in {ms:.1f} ms", {"message": args.message, "acked": True,
                                                                    "ack_ms": round(ms, 2)})
    return 0


def cmd_send_file(args) -> int:
    return _run(_send_file, args)


def _send_file(args) -> int:
    from firmware_bridge import LinkTimeout

    path = pathlib.Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgecodecError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise EdgecodecError(f"{path} is empty")
    with _open(args, chunk_size=args.chunk) as link:
        try:
            link.wait_peer(min(args.timeout, 5.0))
        except LinkTimeout:
            raise _silence(link, args.port, min(args.timeout, 5.0)) from None
        before = link.stats
        t0 = time.perf_counter()
        with Progress(len(data), f"send {path.name}", enabled=False if args.json else None) as bar:
            ok = link.send_frame(data, timeout=args.timeout, progress=lambda done, total: bar.set(done, total))
        seconds = time.perf_counter() - t0
        after = link.stats
    if not ok:
        raise EdgecodecError(f"{args.port}: transfer of {path} failed (no acknowledgement within the retry "
                             f"limit or {args.timeout:g} s)")
    wire = after["bytes_tx"] - before["bytes_tx"]
    record = {"file": str(path), "bytes": len(data), "seconds": round(seconds, 3),
              "bytes_per_s": round(len(data) / seconds, 1) if seconds else None, "wire_bytes": wire,
              "overhead": round(wire / len(data) - 1, 4),
              "chunks_sent": after["chunks_sent"] - before["chunks_sent"],
              "chunks_resent": after["chunks_resent"] - before["chunks_resent"]}
    _print(args, f"{path}: {len(data)} bytes in {seconds:.2f} s ({record['bytes_per_s']} B/s), "
                 f"{wire} bytes on the wire (+{100 * record['overhead']:.1f} %), "
                 f"{record['chunks_resent']} chunks resent", record)
    return 0


if __name__ == "__main__":  # pragma: no cover - run through `edgecodec bridge`
    sys.exit("use: edgecodec bridge ...")
