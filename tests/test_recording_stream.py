"""Recordings of stream mode (key frames and delta frames): export decodes groups of pictures in order,
a time range starts at the key frame before it, ``-j`` never splits a group, damage costs the rest of its
group and ``repair`` drops what it orphaned, and a writer killed mid-record leaves every whole group
decodable."""
from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from edgecodec.bitstream import Kind
from edgecodec.cli import main
from edgecodec.export import plan_groups, select_frames
from edgecodec.recording import RecordingReader, repair
from edgecodec.recording import format as fmt
from edgecodec.temporal import StreamDecoder, StreamEncoder
from edgecodec.testscene import TestScene
from tests.recording_helpers import T0, write_recording

pytestmark = pytest.mark.timeout(300)
W, H, Q, N = 96, 64, 2, 16
STEP = 200_000  # 5 frames/s; key frames every 1 s: frames 0, 5, 10, 15


@pytest.fixture(scope="module")
def codec():
    from edgecodec.codec import Codec

    return Codec.load(threads=1, encoder="float")


def stream_packets(codec, n=N, key_interval_s=1.0):
    scene, enc = TestScene(W, H), StreamEncoder(codec, key_interval_s=key_interval_s)
    return [enc.encode(scene.render(T0 + i * STEP), Q, i, T0 + i * STEP) for i in range(n)]


@pytest.fixture(scope="module")
def packets(codec):
    return stream_packets(codec)


@pytest.fixture(scope="module")
def expected(codec, packets):
    """What a viewer of the whole stream sees, frame by frame."""
    dec = StreamDecoder(codec)
    return [dec.decode(p) for p in packets]


def keys_of(packets):
    from edgecodec import bitstream

    return [i for i, p in enumerate(packets) if bitstream.unpack(p)[0].kind == Kind.FRAME]


def read_pngs(folder, stem):
    out = {}
    for png in sorted(pathlib.Path(folder).glob("*.png")):
        assert png.stem.startswith(stem)
        out[int(png.stem[-6:])] = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    return out


def export_json(capsys, *args):
    code = main(["export", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_stream_recording_exports_every_frame_as_the_live_decoder_shows_it(tmp_path, packets, expected, capsys):
    assert keys_of(packets) == [0, 5, 10, 15]
    path = tmp_path / "cam.ecr"
    write_recording(path, packets, index_every=3)
    with RecordingReader(path) as reader:
        frames = reader.scan().frames
    assert [f.key for f in frames] == [i in (0, 5, 10, 15) for i in range(N)]
    assert [f.reference_sequence for f in frames[1:5]] == [0, 1, 2, 3]
    code, report = export_json(capsys, path, "-o", tmp_path / "png")
    assert code == 0 and report["frames"] == N and report["failures"] == []
    assert report["bytes"] == sum(map(len, packets))
    pngs = read_pngs(tmp_path / "png", "cam")
    assert sorted(pngs) == list(range(N))
    for i in range(N):
        assert np.array_equal(pngs[i], expected[i]), i


@pytest.mark.parametrize("layout", ["indexed", "unindexed tail", "no index"])
def test_a_time_range_starts_decoding_at_the_key_frame_before_it(tmp_path, packets, expected, capsys, layout):
    path = tmp_path / "cam.ecr"
    if layout == "indexed":
        write_recording(path, packets, index_every=3)
    elif layout == "unindexed tail":
        write_recording(path, packets, index_every=6, close=False)  # killed: frames 12.. not indexed
    else:
        write_recording(path, packets, index_every=1000, close=False)
    for lo, hi in ((1.4, 2.2), (0.6, 0.6), (2.4, 3.0), (2.6, None)):  # frames 7..11, 3, 12..15, 13..15
        out = tmp_path / f"png-{lo}-{hi}"
        args = [path, "-o", out, "--from", lo] + ([] if hi is None else ["--to", hi])
        code, report = export_json(capsys, *args)
        first, last = round(lo / 0.2), N - 1 if hi is None else round(hi / 0.2)
        assert code == 0 and report["failures"] == [], (lo, hi, report)
        pngs = read_pngs(out, "cam")
        assert sorted(pngs) == list(range(first, last + 1)), (lo, hi)
        for i, image in pngs.items():
            assert np.array_equal(image, expected[i]), (lo, hi, i)


def test_the_lead_in_is_the_chain_back_to_the_key_frame(tmp_path, packets):
    path = tmp_path / "cam.ecr"
    write_recording(path, packets, index_every=4)
    selection = select_frames([path], "1.6", "2.2")  # frames 8..11; key frames 5 and 10
    assert [f.sequence for _, _, f in selection.frames] == [8, 9, 10, 11]
    assert [f.sequence for _, f in selection.lead] == [5, 6, 7]
    groups = plan_groups(selection)
    assert [[(it.offset, it.show) for it in g] for g in groups] == [
        [(f.offset, s) for f, s in zip([f for _, f in selection.lead] + [f for _, _, f in selection.frames[:2]],
                                       [False] * 3 + [True] * 2)],
        [(f.offset, True) for _, _, f in selection.frames[2:]]]


def test_parallel_export_splits_work_by_group_and_matches_one_process(tmp_path, packets, capsys):
    path = tmp_path / "cam.ecr"
    write_recording(path, packets, index_every=5)
    assert main(["export", str(path), "-o", str(tmp_path / "one"), "-j", "1", "-q"]) == 0
    assert main(["export", str(path), "-o", str(tmp_path / "two"), "-j", "2", "-q"]) == 0
    one = sorted((tmp_path / "one").iterdir())
    assert len(one) == N
    for png in one:
        assert png.read_bytes() == (tmp_path / "two" / png.name).read_bytes()
    capsys.readouterr()
    code, report = export_json(capsys, path, "-o", tmp_path / "v.avi", "-j", "2")
    assert code == 0 and report["frames"] == N
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == N


def damage_frame(path, index):
    with RecordingReader(path) as reader:
        victim = reader.scan().frames[index]
    data = bytearray(path.read_bytes())
    data[victim.offset + fmt.RECORD_HEADER_SIZE + 50] ^= 0x04
    path.write_bytes(bytes(data))


def test_damage_costs_the_rest_of_its_group_and_repair_drops_what_it_orphaned(tmp_path, packets, expected,
                                                                                capsys):
    path = tmp_path / "cam.ecr"
    write_recording(path, packets, index_every=4)
    damage_frame(path, 7)  # a delta frame: 8 and 9 lose their reference, key frame 10 starts afresh
    code, report = export_json(capsys, path, "-o", tmp_path / "png")
    assert code == 1 and len(report["damage"]) == 1
    assert report["frames"] == N - 3 and report["failed"] == 2
    assert all("waiting for the next key frame" in f["error"] for f in report["failures"])
    pngs = read_pngs(tmp_path / "png", "cam")
    assert sorted(pngs) == [i for i in range(N) if i not in (7, 8, 9)]
    for i, image in pngs.items():
        assert np.array_equal(image, expected[i])

    dry = repair(path, dry_run=True)
    assert dry.action == "would be rewritten" and [f.sequence for f in dry.orphans] == [8, 9]
    assert main(["repair", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rewritten" in out and "delta frame 8" in out and "(frame 7) was lost to damage; dropped" in out
    with RecordingReader(path) as reader:
        scan = reader.scan()
    assert scan.intact and [f.sequence for f in scan.frames] == [i for i in range(N) if i not in (7, 8, 9)]
    code, report = export_json(capsys, path, "-o", tmp_path / "again")
    assert code == 0 and report["failures"] == [] and report["frames"] == N - 3, report["failures"]


def test_damaged_key_frame_orphans_its_whole_group_but_not_the_next(tmp_path, packets):
    path = tmp_path / "cam.ecr"
    write_recording(path, packets, index_every=4)
    damage_frame(path, 5)
    report = repair(path)
    assert report.action == "rewritten" and [f.sequence for f in report.orphans] == [6, 7, 8, 9]
    with RecordingReader(path) as reader:
        assert [f.sequence for f in reader.scan().frames] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15]


def test_a_file_that_starts_mid_group_keeps_its_head_frames_on_repair(tmp_path, packets):
    path = tmp_path / "cam.ecr"
    write_recording(path, packets[3:], index_every=4)  # a rotated file: frames 3, 4 belong to key frame 0
    damage_frame(path, 10)  # frame 13
    report = repair(path)
    assert [f.sequence for f in report.orphans] == [14]
    with RecordingReader(path) as reader:
        assert [f.sequence for f in reader.scan().frames] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15]


def test_old_recordings_of_key_frames_only_export_as_before(tmp_path, codec, capsys):
    scene = TestScene(W, H)
    stills = [codec.encode(scene.render(T0 + i * STEP), Q, kind=Kind.FRAME, sequence=i, timestamp_us=T0 + i * STEP)
              for i in range(6)]
    path = tmp_path / "old.ecr"
    write_recording(path, stills, index_every=2)
    code, report = export_json(capsys, path, "-o", tmp_path / "png", "--from", "0.4", "-j", "2")
    assert code == 0 and report["frames"] == 4
    selection = select_frames([path], "0.4", None)
    assert selection.lead == [] and all(len(g) == 1 for g in plan_groups(selection))
    pngs = read_pngs(tmp_path / "png", "old")
    for i, image in pngs.items():
        assert np.array_equal(image, codec.decode(stills[i]))


WRITER = textwrap.dedent("""
    import os, sys, time
    from edgecodec.codec import Codec
    from edgecodec.recording import RecordingWriter, writer as writer_module
    from edgecodec.temporal import StreamEncoder
    from edgecodec.testscene import TestScene

    codec = Codec.load(threads=1, encoder="float")
    scene, enc = TestScene(96, 64), StreamEncoder(codec, key_interval_s=1.0)
    rec = RecordingWriter(sys.argv[1], "cam", index_every=4)
    packets = [enc.encode(scene.render(i * 200_000), 2, i, i * 200_000) for i in range(int(sys.argv[2]) + 1)]
    for p in packets[:-1]:
        rec.append(p)
    real_write = os.write

    def write_half_then_hang(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        print("torn", flush=True)
        time.sleep(600)

    writer_module.os.write = write_half_then_hang
    rec.append(packets[-1])
""")


@pytest.mark.parametrize("complete", [8, 10])  # torn inside a group, and torn on a key frame
def test_writer_killed_mid_record_leaves_every_complete_group_decodable(tmp_path, complete, capsys):
    from tests.desktop_processes import stop

    path = tmp_path / "torn.ecr"
    repo = pathlib.Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(complete)], stdout=subprocess.PIPE,
                            text=True, cwd=repo)
    try:
        assert proc.stdout.readline().strip() == "torn"
        assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop(proc, signal.SIGKILL)
    with RecordingReader(path) as reader:
        scan = reader.scan()
    assert [f.sequence for f in scan.frames] == list(range(complete))
    assert len(scan.damage) == 1 and scan.damage[0].at_end
    code, report = export_json(capsys, path, "-o", tmp_path / "png")
    assert code == 1 and report["damage"][0]["torn_tail"]  # the torn record is reported ...
    assert report["frames"] == complete and report["failures"] == []  # ... and every whole frame decodes
    assert main(["repair", str(path)]) == 0 and "truncated" in capsys.readouterr().out
    code, report = export_json(capsys, path, "-o", tmp_path / "again", "--from", "1.2")
    assert code == 0 and report["frames"] == complete - 6 and report["failures"] == []
