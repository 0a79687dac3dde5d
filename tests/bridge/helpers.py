"""Shared set-ups of the bridge tests: linked host/device pairs, fault models, the C build."""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

from firmware_bridge import Link, LinkHandler
from firmware_bridge.channel import FaultModel, PacedPair, PtyRelay
from firmware_bridge.simulator import DeviceSimulator

C_DIR = pathlib.Path(__file__).resolve().parents[2] / "firmware_bridge" / "c"


class Recorder(LinkHandler):
    """A link handler that keeps what arrives, by kind, and lets a test wait for it."""

    KINDS = ("hello", "trigger", "quality", "telemetry", "status", "frame", "message")

    def __init__(self):
        self.got: dict[str, list] = {kind: [] for kind in self.KINDS}
        self._cond = threading.Condition()

    def _add(self, kind: str, item) -> None:
        with self._cond:
            self.got[kind].append(item)
            self._cond.notify_all()

    def wait(self, cond, timeout: float = 10.0) -> bool:
        """Wait until ``cond()`` holds (checked whenever something arrives); False after ``timeout``."""
        end = time.monotonic() + timeout
        with self._cond:
            while not cond():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def on_hello(self, msg) -> None:
        self._add("hello", msg)

    def on_trigger(self, msg) -> None:
        self._add("trigger", msg)

    def on_set_quality(self, msg) -> None:
        self._add("quality", msg)

    def on_telemetry(self, msg) -> None:
        self._add("telemetry", msg)

    def on_status(self, msg) -> None:
        self._add("status", msg)

    def on_frame(self, data: bytes) -> None:
        self._add("frame", data)

    def on_message(self, msg) -> None:
        self._add("message", msg)


def noisy(p: float, seed: int) -> FaultModel:
    """p of bytes corrupted, p/4 dropped and p/4 random bytes inserted."""
    return FaultModel(corrupt=p, insert=p / 4, drop=p / 4, seed=seed)


@contextlib.contextmanager
def paced_link(baud: int | None = 460800, ab: FaultModel | None = None, ba: FaultModel | None = None,
               host_options: dict | None = None, device_options: dict | None = None):
    """A host Link and a simulated device joined by a paced in-process pair: (host, device, pair)."""
    pair = PacedPair(baud, ab, ba)
    device = DeviceSimulator("test-device")
    device.attach(pair.b, baud or 115200, **(device_options or {}))
    host = Link(pair.a, baud or 115200, **(host_options or {}))
    try:
        host.wait_peer(5)
        yield host, device, pair
    finally:
        host.close()
        device.close()
        pair.close()


@contextlib.contextmanager
def pty_link(ab: FaultModel | None = None, ba: FaultModel | None = None, baud: int | None = None):
    """A host Link on a real pty, a simulated device on another, a relay between: (host, device, relay)."""
    relay = PtyRelay(ab, ba, baudrate=baud)
    device = DeviceSimulator("pty-device")
    try:
        device.attach(relay.port_b, baud or 115200)
        host = Link(relay.port_a, baud or 115200)
        try:
            host.wait_peer(5)
            yield host, device, relay
        finally:
            host.close()
    finally:
        device.close()
        relay.close()


def c_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(scope="session")
def c_build(tmp_path_factory) -> pathlib.Path:
    """Compile the C library, its tests and the device demo into a temporary folder."""
    cc = c_compiler()
    if cc is None or shutil.which("make") is None:
        pytest.skip("no C compiler or make")
    build = tmp_path_factory.mktemp("ebridge")
    proc = subprocess.run(["make", "-s", "-C", str(C_DIR), f"BUILD={build}", f"CC={cc}", "all"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return build
