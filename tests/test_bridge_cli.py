"""``edgecodec bridge`` as a user runs it: against a simulated device on a pty, and when things go wrong."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from edgecodec.cli import main
from firmware_bridge.channel import PtyRelay
from firmware_bridge.simulator import DeviceSimulator

pytestmark = pytest.mark.timeout(60)  # no test may hang (needs pytest-timeout)


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edgecodec", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture()
def device_port():
    """A simulated device on one pty of a relay; yields (the tty to open, the simulator)."""
    relay = PtyRelay()
    device = DeviceSimulator("cli-device")
    device.attach(relay.port_b)
    try:
        yield relay.port_a, device
    finally:
        device.close()
        relay.close()


def test_bridge_help_lists_the_actions_and_exit_codes():
    proc = run_cli("bridge", "--help")
    assert proc.returncode == 0
    for word in ("ping", "monitor", "send", "send-file", "Exit codes"):
        assert word in proc.stdout


def test_ping_reports_the_device_as_json(device_port, capsys):
    port, _ = device_port
    assert main(["bridge", "ping", port, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["name"] == "cli-device" and record["role"] == "device" and record["max_payload"] == 260
    assert record["rtt_ms"] > 0


def test_send_file_delivers_the_file_bit_exact_with_json_figures(device_port, tmp_path, capsys):
    port, device = device_port
    frame = tmp_path / "shot.ecc"
    frame.write_bytes(os.urandom(3000))
    assert main(["bridge", "send-file", port, str(frame), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["bytes"] == 3000 and 0 < record["overhead"] < 0.2
    end = time.monotonic() + 5
    while device.frame_count < 1 and time.monotonic() < end:
        time.sleep(0.01)
    assert device.frames == [frame.read_bytes()]


def test_send_quality_command_reaches_the_device(device_port, capsys):
    port, device = device_port
    assert main(["bridge", "send", port, "quality", "4", "--bitrate", "64000"]) == 0
    assert "acknowledged" in capsys.readouterr().out
    end = time.monotonic() + 5
    while not device.qualities and time.monotonic() < end:
        time.sleep(0.01)
    assert (device.qualities[0].quality, device.qualities[0].target_bps) == (4, 64000)


def test_send_quality_keep_sends_the_unchanged_marker_with_a_bitrate(device_port, capsys):
    port, device = device_port
    assert main(["bridge", "send", port, "quality", "keep", "--bitrate", "32000"]) == 0
    end = time.monotonic() + 5
    while not device.qualities and time.monotonic() < end:
        time.sleep(0.01)
    assert (device.qualities[0].quality, device.qualities[0].target_bps) == (0xFF, 32000)


def test_send_request_prints_the_answer_as_json(device_port, capsys):
    port, _ = device_port
    assert main(["bridge", "send", port, "request", "telemetry", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["type"] == "telemetry" and record["battery_mv"] == 3900


def test_monitor_prints_device_triggers_as_json_lines(device_port, capsys):
    port, device = device_port
    fire = threading.Timer(0.5, device.trigger, kwargs={"source": 1})
    fire.start()
    assert main(["bridge", "monitor", port, "--duration", "1.5", "--json"]) == 0
    fire.join()
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"hello", "trigger"} <= {r["type"] for r in records}


def test_missing_port_is_a_one_line_error_with_exit_1():
    proc = run_cli("bridge", "ping", "/dev/ttyDOESNOTEXIST")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "cannot open /dev/ttyDOESNOTEXIST" in proc.stderr


def test_silent_device_times_out_with_exit_1():
    with PtyRelay() as relay:  # nobody on the other side
        proc = run_cli("bridge", "ping", relay.port_a, "--timeout", "0.5")
    assert proc.returncode == 1 and "no answer" in proc.stderr and "Traceback" not in proc.stderr


def test_garbage_on_the_line_is_reported_as_such():
    with PtyRelay() as relay:
        stop = threading.Event()

        def babble():
            fd = os.open(relay.port_b, os.O_RDWR | os.O_NOCTTY)
            while not stop.is_set():  # a device at the wrong baud rate: bytes, but never a valid frame
                os.write(fd, os.urandom(64))
                time.sleep(0.02)
            os.close(fd)

        t = threading.Thread(target=babble, daemon=True)
        t.start()
        try:
            proc = run_cli("bridge", "ping", relay.port_a, "--timeout", "0.7")
        finally:
            stop.set()
            t.join()
    assert proc.returncode == 1 and "no valid frame" in proc.stderr and "baud" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run_cli("bridge").returncode == 2
    assert run_cli("bridge", "send", "loop://", "quality", "notanumber").returncode == 2


def test_bad_key_value_and_unreadable_file_fail_cleanly(tmp_path):
    proc = run_cli("bridge", "send", "loop://", "status", "novalue")
    assert proc.returncode == 1 and "KEY=VALUE" in proc.stderr
    proc = run_cli("bridge", "send-file", "loop://", tmp_path / "missing.ecc")
    assert proc.returncode == 1 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
