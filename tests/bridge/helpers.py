"""Shared set-ups of the bridge tests: linked host/device pairs, fault models, the C build."""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess

import pytest

from firmware_bridge import Link
from firmware_bridge.channel import FaultModel, PacedPair, PtyRelay
from firmware_bridge.simulator import DeviceSimulator

C_DIR = pathlib.Path(__file__).resolve().parents[2] / "firmware_bridge" / "c"


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
