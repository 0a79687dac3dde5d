"""A simulated companion microcontroller that answers like the firmware would, for tests and demos.

    python -m firmware_bridge.simulator --port /dev/ttyUSB0         # a real or socat-made tty
    python -m firmware_bridge.simulator --pty                       # makes a pty and prints its path
    python -m firmware_bridge.simulator --listen 127.0.0.1:7000     # for socket://127.0.0.1:7000

It introduces itself (HELLO), sends heartbeats, telemetry and, if asked, periodic triggers;
answers requests; acknowledges quality commands; reassembles incoming frames (optionally saving
them); and prints one line per event on stdout.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import socket
import sys
import threading
import time
import tty

from firmware_bridge.channel import SocketPort
from firmware_bridge.errors import BridgeError
from firmware_bridge.handler import LinkHandler
from firmware_bridge.link import Link
from firmware_bridge.messages import FrameChunk, SetQuality, Telemetry, Trigger
from firmware_bridge.transfer import FrameReceiver

DEVICE_MAX_PAYLOAD = 260   # what a small MCU would announce
DEVICE_MAX_FRAME = 65536


class DeviceSimulator(LinkHandler):
    """The device side of a link: sensors, a trigger input and a frame sink, over one ``Link`` at a time.

    It is its own link's handler: ``telemetry`` and ``status`` answer the host's requests."""

    def __init__(self, name: str = "sim-mcu", save_dir: str | os.PathLike | None = None, keep: int = 16,
                 battery_mv: int = 3900, temperature_c: float = 24.0, echo=None):
        self.name = name
        self.save_dir = pathlib.Path(save_dir) if save_dir else None
        self.keep = keep
        self.battery_mv = battery_mv
        self.temperature_c = temperature_c
        self.echo = echo  # called with one line of text per event
        self.frames: list[bytes] = []     # the last ``keep`` frames received
        self.frame_count = 0
        self.qualities: list[SetQuality] = []
        self.receiver = FrameReceiver(DEVICE_MAX_FRAME, DEVICE_MAX_PAYLOAD - FrameChunk.HEADER)
        self.link: Link | None = None
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def attach(self, port, baudrate: int = 115200, **link_options) -> Link:
        """Start talking on ``port`` (a name, URL or serial-like object); transfers survive re-attaching."""
        self.detach()
        self.link = Link(port, baudrate, role="device", name=self.name, max_payload=DEVICE_MAX_PAYLOAD,
                         window=16, max_frame=DEVICE_MAX_FRAME, receiver=self.receiver, handler=self,
                         **link_options)
        return self.link

    def detach(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    close = detach

    def telemetry(self) -> Telemetry:
        uptime = time.monotonic() - self._started
        return Telemetry(self.battery_mv, max(0, min(100, (self.battery_mv - 3300) // 9)), self.temperature_c,
                         {"uptime_s": f"{uptime:.0f}", "frames": str(self.frame_count)})

    def status(self) -> dict:
        return {"frames": str(self.frame_count), "simulated": "yes"}

    def trigger(self, source: int = 1, channel: int = 0, timeout: float = 5.0) -> bool:
        """Send a TRIGGER (reliable); True once the host acknowledged it."""
        ms = int((time.monotonic() - self._started) * 1000)
        return self.link is not None and self.link.send(Trigger(source, channel, ms), timeout=timeout)

    def send_telemetry(self, timeout: float = 5.0) -> bool:
        return self.link is not None and self.link.send(self.telemetry(), timeout=timeout)

    def _say(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)

    def on_frame(self, data: bytes) -> None:
        with self._lock:
            index = self.frame_count
            self.frame_count += 1
            self.frames.append(data)
            del self.frames[:-self.keep]
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"frame-{index:05d}.ecc").write_bytes(data)
        self._say(f"frame {index} {len(data)} bytes")

    def on_set_quality(self, msg: SetQuality) -> None:
        self.qualities.append(msg)
        self._say(f"set_quality quality={msg.quality} target_bps={msg.target_bps}")

    def on_message(self, msg) -> None:
        if not isinstance(msg, SetQuality):
            self._say(f"{type(msg).__name__.lower()} {msg}")


def _serve(sim: DeviceSimulator, args, stop: threading.Event) -> None:
    """Run periodic triggers and telemetry until ``stop`` is set."""
    next_trigger = time.monotonic() + args.trigger_every if args.trigger_every else None
    next_telemetry = time.monotonic() + args.telemetry_every if args.telemetry_every else None
    while not stop.wait(0.05):
        now = time.monotonic()
        if next_trigger is not None and now >= next_trigger:
            print(f"trigger sent, acked={sim.trigger()}", flush=True)
            next_trigger = now + args.trigger_every
        if next_telemetry is not None and now >= next_telemetry:
            sim.send_telemetry()
            next_telemetry = now + args.telemetry_every


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.simulator",
                                     description="Simulated bridge microcontroller.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port or pyserial URL to answer on")
    where.add_argument("--pty", action="store_true", help="create a pseudo-terminal and print its path")
    where.add_argument("--listen", metavar="HOST:PORT", help="accept TCP connections (for socket:// URLs)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--name", default="sim-mcu")
    parser.add_argument("--trigger-every", type=float, metavar="S", help="send a trigger every S seconds")
    parser.add_argument("--telemetry-every", type=float, metavar="S", help="send telemetry every S seconds")
    parser.add_argument("--save-dir", help="write received frames here")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    args = parser.parse_args(argv)

    sim = DeviceSimulator(args.name, args.save_dir, echo=lambda s: print(s, flush=True))
    stop = threading.Event()
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    fds: list[int] = []
    try:
        if args.listen:
            host, _, port = args.listen.rpartition(":")
            server = socket.create_server((host or "127.0.0.1", int(port)))
            server.settimeout(0.2)
            print(f"listening on {host or '127.0.0.1'}:{server.getsockname()[1]}", flush=True)
            worker = threading.Thread(target=_serve, args=(sim, args, stop), daemon=True)
            worker.start()
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                link = sim.attach(SocketPort(conn, args.baud), args.baud)
                while not stop.is_set() and link.stats["port_errors"] == 0:
                    time.sleep(0.05)
                sim.detach()
                conn.close()
            return 0
        if args.pty:
            master, slave = os.openpty()
            tty.setraw(slave)
            fds = [master, slave]
            print(f"device on {os.ttyname(slave)}", flush=True)
            sim.attach(_FdPort(master, args.baud), args.baud)
        else:
            sim.attach(args.port, args.baud)
            print(f"device on {args.port} at {args.baud} baud", flush=True)
        _serve(sim, args, stop)
        return 0
    except BridgeError as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop.set()
        sim.close()
        for fd in fds:
            os.close(fd)


class _FdPort:
    """A pty master file descriptor with the serial-like interface ``Link`` uses."""

    def __init__(self, fd: int, baudrate: int, timeout: float = 0.02):
        self.fd, self.baudrate, self.timeout = fd, baudrate, timeout

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        import select

        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        return os.read(self.fd, 4096) if ready else b""

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return len(data)

    def close(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
