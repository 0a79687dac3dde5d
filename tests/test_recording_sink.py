"""The server's recorder on a real FrameHub: one file per camera, rotation by size and by age."""
from __future__ import annotations

from edgecodec import bitstream
from edgecodec.recording import RecordingReader, RecordingSink, attach
from edgecodec.server.hub import FrameHub
from tests.recording_helpers import fake_packet


def publish(hub, camera_id, packets):
    for p in packets:
        header, _ = bitstream.unpack(p)
        hub.publish(camera_id, header, p)


def read_all(paths):
    out = []
    for path in paths:
        with RecordingReader(path) as reader:
            out.extend(reader.read(f) for f in reader.scan().frames)
    return out


def test_each_camera_gets_its_own_file_with_every_frame(tmp_path):
    hub = FrameHub()
    sink = attach(hub, tmp_path / "rec", sync_seconds=0.05)
    a = [fake_packet(i) for i in range(5)]
    b = [fake_packet(i) for i in range(3)]
    publish(hub, "front door", a)
    publish(hub, "yard", b)
    sink.close()
    assert len(sink.files) == 2
    front = next(p for p in sink.files if "front_door" in p)
    assert "/front_door/front_door-" in front and front.endswith(".ecr")
    with RecordingReader(front) as reader:
        assert reader.camera_id == "front door"
    assert read_all([front]) == a
    publish(hub, "yard", [fake_packet(9)])  # unsubscribed: nothing more is written
    assert read_all([p for p in sink.files if "yard" in p]) == b


def test_rotation_by_size_starts_new_files_and_loses_nothing(tmp_path):
    hub = FrameHub()
    sink = RecordingSink(hub, tmp_path, rotate_bytes=2000, sync_seconds=0).start()
    packets = [fake_packet(i, size=400) for i in range(12)]
    publish(hub, "cam", packets)
    sink.close()
    assert len(sink.files) >= 3
    assert all(len(open(p, "rb").read()) <= 2000 + 600 for p in sink.files)  # +final index
    assert read_all(sink.files) == packets


def test_rotation_by_age_starts_a_new_file(tmp_path, monkeypatch):
    import edgecodec.recording.sink as sink_mod

    clock = [1000.0]
    monkeypatch.setattr(sink_mod.time, "monotonic", lambda: clock[0])
    hub = FrameHub()
    sink = RecordingSink(hub, tmp_path, rotate_seconds=60, sync_seconds=0).start()
    publish(hub, "cam", [fake_packet(0), fake_packet(1)])
    clock[0] += 61
    publish(hub, "cam", [fake_packet(2)])
    sink.close()
    assert len(sink.files) == 2
    assert len(set(sink.files)) == 2
    assert [len(read_all([p])) for p in sink.files] == [2, 1]


def test_a_frame_is_in_the_file_as_soon_as_publish_returns(tmp_path):
    hub = FrameHub()
    sink = RecordingSink(hub, tmp_path, sync_seconds=0).start()
    packet = fake_packet(0)
    publish(hub, "cam", [packet])
    assert read_all(sink.files) == [packet]  # before close: no buffering in the process
    sink.close()
