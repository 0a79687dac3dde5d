"""The edge pipeline with a companion MCU (the simulator) on a pty: triggers, quality commands, bad ports."""
from __future__ import annotations

import argparse
import contextlib

import pytest

from edgecodec import bitstream
from edgecodec.codec import Codec
from edgecodec.edge import config as cfg
from edgecodec.edge.pipeline import EdgePipeline
from edgecodec.edge.ratecontrol import RateController
from edgecodec.errors import ConfigError
from firmware_bridge import QUALITY_UNCHANGED, SetQuality
from firmware_bridge.channel import PtyRelay
from firmware_bridge.simulator import DeviceSimulator
from tests.stream_support import SECRET, wait_until

pytestmark = pytest.mark.timeout(30)

UNREACHABLE = "tcp://127.0.0.1:9"  # the network sender just spools: these tests are about serial


@pytest.fixture(scope="module")
def codec():
    return Codec.load(None, threads=1)


def edge_config(tmp_path, *flags):
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    args = parser.parse_args(["--camera-id", "cam1", "--server", UNREACHABLE, "--secret", SECRET,
                              "--spool-dir", str(tmp_path / "edge"), "--width", "64", "--height", "48",
                              "--fps", "10", "--quality", "1", *map(str, flags)])
    return cfg.load(None, args)


@contextlib.contextmanager
def edge_with_device(tmp_path, codec, *flags, baud=None):
    """A running pipeline whose [bridge] port is a pty, the simulated MCU on the other end."""
    relay = PtyRelay(baudrate=baud)
    device = DeviceSimulator("test-mcu")
    pipe = None
    try:
        device.attach(relay.port_b)
        pipe = EdgePipeline(edge_config(tmp_path, "--bridge-port", relay.port_a, *flags), codec=codec)
        pipe.start()
        wait_until(lambda: device.link.peer is not None, 5, what="the edge's HELLO")
        yield pipe, device
    finally:
        if pipe is not None:
            pipe.stop()
        device.close()
        relay.close()


def test_a_trigger_from_the_mcu_sends_one_frame_that_arrives_bitexact_and_decodes(tmp_path, codec):
    with edge_with_device(tmp_path, codec) as (pipe, device):
        wait_until(lambda: pipe.encoder.encoded >= 1, 10, what="a first encoded frame")
        assert device.trigger(timeout=3)
        wait_until(lambda: pipe.bridge.sent >= 1, 10, what="a frame over serial")
        figures = pipe.figures()
    assert device.frame_count == 1  # trigger mode: nothing but the triggered frame goes over serial
    assert figures["serial_triggers"] == 1 and figures["serial_sent"] == 1 and figures["serial_failed"] == 0
    packet = device.frames[0]
    header, _ = bitstream.unpack(packet, expect_model_id=codec.model_id)
    assert (header.width, header.height, header.quality) == (64, 48, 1)
    assert codec.decode(packet).shape[:2] == (48, 64)


def test_set_quality_from_the_mcu_changes_the_quality_of_later_frames(tmp_path, codec):
    with edge_with_device(tmp_path, codec, "--bridge-mode", "all") as (pipe, device):
        wait_until(lambda: device.frame_count >= 1, 10, what="a frame over serial")
        assert bitstream.unpack(device.frames[-1])[0].quality == 1
        assert device.link.send(SetQuality(4, 0), timeout=3)
        wait_until(lambda: bitstream.unpack(device.frames[-1])[0].quality == 4, 10, what="a quality-4 frame")
        wait_until(lambda: pipe.bridge.sent >= 2, 10, what="the second frame acknowledged")
        figures = pipe.figures()
    assert figures["serial_quality_commands"] == 1


def test_a_serial_line_slower_than_the_encoder_keeps_only_the_newest_frame_waiting(tmp_path, codec):
    # About 130 wire bytes a frame at 4800 baud: some 3 frames/s get through, the camera makes 10.
    with edge_with_device(tmp_path, codec, "--bridge-mode", "all", baud=4800) as (pipe, device):
        wait_until(lambda: pipe.bridge.dropped >= 3 and pipe.bridge.sent >= 2, 15, what="frames dropped")
        f = pipe.figures()
    assert f["serial_failed"] == 0
    assert f["encoded"] - (f["serial_sent"] + f["serial_dropped"]) <= 2  # one in flight, one waiting
    seqs = [bitstream.unpack(p)[0].sequence for p in device.frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_set_quality_can_choose_quality_zero_and_0xff_keeps_the_quality_with_a_new_target(tmp_path, codec):
    with edge_with_device(tmp_path, codec, "--bridge-mode", "all") as (pipe, device):
        wait_until(lambda: device.frame_count >= 1, 10, what="a frame over serial")
        assert device.link.send(SetQuality(0, 0), timeout=3)
        wait_until(lambda: bitstream.unpack(device.frames[-1])[0].quality == 0, 10, what="a quality-0 frame")
        assert device.link.send(SetQuality(QUALITY_UNCHANGED, 64000), timeout=3)
        wait_until(lambda: pipe.bridge.quality_commands == 2, 5, what="the second command handled")
        rate = pipe.encoder.rate
    assert isinstance(rate, RateController) and rate.rate == 64000 / 8  # 0xFF is "unchanged", not quality 255


def test_set_quality_outside_the_model_range_is_ignored(tmp_path, codec):
    with edge_with_device(tmp_path, codec) as (pipe, device):
        rate = pipe.encoder.rate
        assert device.link.send(SetQuality(200, 0), timeout=3)
        wait_until(lambda: pipe.bridge.quality_commands == 1, 5, what="the command handled")
        assert pipe.encoder.rate is rate


def test_a_missing_serial_port_fails_the_start_with_a_config_error(tmp_path, codec):
    pipe = EdgePipeline(edge_config(tmp_path, "--bridge-port", str(tmp_path / "no-such-tty")), codec=codec)
    with pytest.raises(ConfigError, match=r"\[bridge\] port = .*no-such-tty"):
        pipe.start()


def test_a_bad_bridge_mode_or_baudrate_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        edge_config(tmp_path, "--bridge-port", "/dev/ttyAMA0", "--bridge-mode", "sometimes",
                    "--bridge-baudrate", "12")
    assert "--bridge-mode = 'sometimes'" in str(info.value) and "--bridge-baudrate = 12" in str(info.value)


def test_without_a_bridge_port_the_pipeline_has_no_bridge(tmp_path):
    assert edge_config(tmp_path).bridge.port == ""
    assert EdgePipeline(edge_config(tmp_path)).bridge is None


def test_check_config_reports_a_bridge_port_that_cannot_be_opened(tmp_path, capsys):
    from edgecodec.cli import main

    flags = ["--secret", SECRET, "--spool-dir", str(tmp_path), "--bridge-port", str(tmp_path / "no-such-tty")]
    assert main(["edge", *flags, "--check-config"]) == 1
    assert "[bridge] port = " in capsys.readouterr().err


def test_check_config_accepts_a_bridge_port_that_opens(tmp_path, capsys):
    from edgecodec.cli import main

    relay = PtyRelay()
    try:
        flags = ["--secret", SECRET, "--spool-dir", str(tmp_path), "--bridge-port", relay.port_a]
        assert main(["edge", *flags, "--check-config"]) == 0
    finally:
        relay.close()
    assert "configuration OK" in capsys.readouterr().out


def test_with_server_none_frames_leave_over_serial_only(tmp_path, codec):
    relay = PtyRelay()
    device = DeviceSimulator("test-mcu")
    pipe = None
    try:
        device.attach(relay.port_b)
        parser = argparse.ArgumentParser()
        cfg.add_arguments(parser)
        args = parser.parse_args(["--camera-id", "cam1", "--server", "none", "--spool-dir", str(tmp_path / "e"),
                                  "--width", "64", "--height", "48", "--fps", "10", "--quality", "1",
                                  "--bridge-port", relay.port_a, "--bridge-mode", "all"])
        pipe = EdgePipeline(cfg.load(None, args), codec=codec)
        pipe.start()
        assert pipe.sender is None
        wait_until(lambda: device.frame_count >= 2, 15, what="frames over serial")
        figures = pipe.figures()
    finally:
        if pipe is not None:
            pipe.stop()
        device.close()
        relay.close()
    assert figures["sent"] == 0 and figures["serial_sent"] >= 1
    assert codec.decode(device.frames[0]).shape[:2] == (48, 64)


def test_server_none_without_a_serial_bridge_in_all_mode_is_a_config_error(tmp_path):
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    args = parser.parse_args(["--camera-id", "cam1", "--server", "none", "--spool-dir", str(tmp_path / "e")])
    with pytest.raises(ConfigError, match="serial bridge only"):
        cfg.load(None, args)
