"""Real pseudo-terminals and the C implementation: faults on an OS tty, C/Python interoperability."""
from __future__ import annotations

import random
import re
import subprocess
import threading
import time
import zlib

import pytest

from firmware_bridge import Link, SetQuality
from firmware_bridge.channel import FaultModel, PtyRelay
from tests.bridge.helpers import C_DIR, Recorder, c_build, c_compiler, noisy, pty_link  # noqa: F401 - c_build is a fixture

pytestmark = pytest.mark.timeout(60)  # no test may hang (needs pytest-timeout)


def test_pty_corrupted_bytes_frame_arrives_bitexact_or_fails_after_retries():
    rng = random.Random(21)
    frames = [rng.randbytes(rng.randrange(1000, 3000)) for _ in range(3)]
    with pty_link(noisy(0.01, 1), noisy(0.01, 2)) as (host, device, relay):
        results = [host.send_frame(f, timeout=20) for f in frames]
        time.sleep(0.1)
    assert sum(results) >= 2
    assert [f for f, ok in zip(frames, results) if ok] == [f for f in device.frames if f in frames]
    assert all(f in frames for f in device.frames)


def test_pty_link_drop_resumes_the_transfer():
    data = random.Random(22).randbytes(15000)
    ab, ba = FaultModel(), FaultModel()
    with pty_link(ab, ba, baud=115200) as (host, device, relay):
        def unplug():  # mid-transfer by bytes relayed, not by clock, so a loaded machine cuts it too
            end = time.monotonic() + 15
            while ab.stats["bytes"] < len(data) // 3 and time.monotonic() < end:
                time.sleep(0.005)
            ab.cut = ba.cut = True
            time.sleep(0.8)
            ab.cut = ba.cut = False
        threading.Thread(target=unplug, daemon=True).start()
        assert host.send_frame(data, timeout=20)
        end = time.monotonic() + 5
        while device.frame_count < 1 and time.monotonic() < end:
            time.sleep(0.01)
        sent = host.stats["chunks_sent"]
    assert ab.stats["cut"] > 0  # the cable really was pulled during the transfer
    assert device.frames == [data]
    assert sent < 1.5 * -(-len(data) // 256)


def test_c_unit_tests_pass_on_the_shared_vectors(c_build):
    proc = subprocess.run(["make", "-s", "-C", str(C_DIR), f"BUILD={c_build}", f"CC={c_compiler()}", "test"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^(\d+) passed, 0 failed$", proc.stdout, re.M), proc.stdout
    assert "within memcpy/memset" in proc.stdout  # the library needs nothing else from libc


def test_c_unit_tests_pass_under_address_and_undefined_behaviour_sanitizers(c_build):
    probe = subprocess.run([c_compiler(), "-fsanitize=address,undefined", "-x", "c", "-", "-o",
                            str(c_build / "probe")], input="int main(void){return 0;}", capture_output=True,
                           text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("the C compiler has no sanitizer runtime")
    proc = subprocess.run(["make", "-s", "-C", str(C_DIR), f"BUILD={c_build}", f"CC={c_compiler()}",
                           "test-sanitize"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^(\d+) passed, 0 failed$", proc.stdout, re.M)


@pytest.fixture()
def c_device(c_build, tmp_path):
    """The C demo device on one pty of a faulty relay; yields (relay, process, output dir)."""
    relay = PtyRelay(noisy(0.005, 31), noisy(0.005, 32))
    proc = subprocess.Popen([str(c_build / "ebridge_device"), relay.port_b, "-o", str(tmp_path), "-t", "200"],
                            stdout=subprocess.PIPE, text=True)
    try:
        yield relay, proc, tmp_path
    finally:
        proc.kill()
        proc.wait(5)
        relay.close()


def test_c_device_reassembles_python_frames_bit_exact_over_a_faulty_pty(c_device):
    relay, proc, out = c_device
    rng = random.Random(33)
    frames = [rng.randbytes(n) for n in (1, 255, 256, 4000)]
    events = Recorder()
    triggers = events.got["trigger"]
    with Link(relay.port_a, handler=events) as host:
        peer = host.wait_peer(5)
        assert (peer.name, peer.max_payload) == ("ebridge-c", 260)
        results = [host.send_frame(f, timeout=20) for f in frames]
        assert host.send(SetQuality(3, 96000), timeout=5)
        telemetry = host.request(6, timeout=5)
        time.sleep(0.5)
    proc.kill()
    report = proc.communicate(timeout=5)[0]
    assert all(results)
    lines = [ln.split() for ln in report.splitlines() if ln.startswith("frame ")]
    assert [(int(n), c) for _, _, n, c in lines] == [(len(f), f"{zlib.crc32(f):08x}") for f in frames]
    assert [(out / f"frame-{i}.bin").read_bytes() for i in range(len(frames))] == frames
    assert "quality 3 96000" in report
    assert telemetry.values == {"impl": "c"} and telemetry.temperature_c == 21.5
    assert triggers and all(t.source_name == "gpio" for t in triggers)  # C-encoded TRIGGERs decode in Python


def test_c_and_python_encode_identical_bytes_for_every_frame_vector():
    """Both sides check the same wire bytes: Python here, C in its unit test (records ``frame``)."""
    from firmware_bridge.framing import encode_frame
    from firmware_bridge.vectors import DEFAULT_PATH

    count = 0
    for line in DEFAULT_PATH.read_text().splitlines():
        if line.startswith("frame "):
            _, t, fl, seq, payload, wire = line.split()
            payload = b"" if payload == "-" else bytes.fromhex(payload)
            assert encode_frame(int(t), payload, flags=int(fl), seq=int(seq)).hex() == wire
            count += 1
    assert count >= 5
