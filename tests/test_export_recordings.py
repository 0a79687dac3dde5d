"""``edgecodec export`` and ``repair`` on real encoded recordings: PNG, video, time ranges, damage, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgecodec.batch import DecodeTask, decode_batch, decode_files
from edgecodec.bitstream import Kind
from edgecodec.cli import main
from edgecodec.recording import RecordingReader
from edgecodec.recording import format as fmt
from edgecodec.testscene import TestScene
from tests.recording_helpers import T0, fake_packet, write_recording

pytestmark = pytest.mark.timeout(240)
N = 8
W, H = 96, 64


@pytest.fixture(scope="module")
def codec():
    from edgecodec.codec import Codec

    return Codec.load(threads=1)


@pytest.fixture(scope="module")
def packets(codec):
    scene = TestScene(W, H)
    return [codec.encode(scene.render(T0 + i * 200_000), 2, kind=Kind.FRAME, sequence=i,
                         timestamp_us=T0 + i * 200_000) for i in range(N)]


@pytest.fixture()
def recording(tmp_path, packets):
    path = tmp_path / "cam-20261124-100000.ecr"
    write_recording(path, packets, index_every=3)
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgecodec", *map(str, args)], capture_output=True,
                          text=True, timeout=200)


def test_export_writes_one_png_per_frame_and_a_json_summary(recording, tmp_path, packets, codec, capsys):
    out = tmp_path / "png"
    assert main(["export", str(recording), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{recording.stem}_{i:06d}.png" for i in range(N)]
    assert report["frames"] == N and report["failed"] == 0 and report["damage"] == []
    assert report["bytes"] == sum(map(len, packets))
    assert report["mean_bpp"] == pytest.approx(sum(map(len, packets)) * 8 / (N * W * H), rel=1e-3)
    assert report["seconds"] > 0 and report["frames_per_s"] > 0
    first = cv2.cvtColor(cv2.imread(str(out / names[0])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(first, codec.decode(packets[0]))


def test_export_to_mp4_holds_every_frame_at_the_capture_rate(recording, tmp_path, capsys):
    video = tmp_path / "out.mp4"
    assert main(["export", str(recording), "-o", str(video)]) == 0
    assert "8 of 8 frames" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (H, W, 3)
        frames += 1
    assert frames == N
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0, rel=0.01)  # frames 200 ms apart


def test_time_range_by_seconds_and_by_date_time(recording, tmp_path, capsys):
    assert main(["export", str(recording), "-o", str(tmp_path / "a"), "--from", "0.4", "--to", "1.0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 4  # 0.4, 0.6, 0.8, 1.0 s
    assert sorted(p.name[-10:] for p in (tmp_path / "a").iterdir())[0] == "000002.png"
    import datetime as dt

    start = dt.datetime.fromtimestamp((T0 + 1_200_000) / 1e6).isoformat()
    assert main(["export", str(recording), "-o", str(tmp_path / "b"), "--from", start, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 2


def test_parallel_export_gives_the_same_pngs_as_one_process(recording, tmp_path):
    assert main(["export", str(recording), "-o", str(tmp_path / "one"), "-j", "1", "-q"]) == 0
    assert main(["export", str(recording), "-o", str(tmp_path / "two"), "-j", "2", "-q"]) == 0
    for png in (tmp_path / "one").iterdir():
        assert png.read_bytes() == (tmp_path / "two" / png.name).read_bytes()


def test_damaged_recording_exports_every_intact_frame_and_reports_the_rest(recording, tmp_path):
    with RecordingReader(recording) as reader:
        victim = reader.scan().frames[3]
    data = bytearray(recording.read_bytes())
    data[victim.offset + fmt.RECORD_HEADER_SIZE + 60] ^= 0x08
    record = fmt.pack_record(fmt.FRAME_SYNC, b"x" * 500, 99, T0, T0)
    recording.write_bytes(bytes(data) + record[:200])
    out = tmp_path / "png"
    result = run_cli("export", recording, "-o", out)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "damaged data" in result.stderr and "torn last record" in result.stderr
    assert "7 of 7 frames" in result.stdout
    # Names keep each frame's position in the file: the damaged frame 3 leaves a gap.
    assert sorted(p.name[-10:-4] for p in out.iterdir()) == ["000000", "000001", "000002", "000004",
                                                             "000005", "000006", "000007"]
    fixed = run_cli("repair", recording)
    assert fixed.returncode == 0 and "rewritten" in fixed.stdout
    again = run_cli("export", recording, "-o", tmp_path / "again")
    assert again.returncode == 0, again.stderr


def test_recording_still_being_written_exports_its_whole_frames_and_exits_0(tmp_path, packets):
    path = tmp_path / "live.ecr"
    writer = write_recording(path, packets[:5], close=None)  # open: the writer's lock is held
    try:
        with open(path, "ab") as f:  # the next frame, half appended
            f.write(fmt.pack_record(fmt.FRAME_SYNC, packets[5], 5, T0, T0)[:100])
        result = run_cli("export", path, "-o", tmp_path / "png", "--json")
        assert result.returncode == 0, result.stderr
        assert "still being written" in result.stderr
        report = json.loads(result.stdout)
        assert report["frames"] == 5 and report["damage"] == []
        assert report["being_written"] == [{"recording": str(path), "incomplete_bytes": 100}]
        size = path.stat().st_size
        checked = run_cli("repair", path)
        assert checked.returncode == 0 and "intact" in checked.stdout
        data = bytearray(path.read_bytes())
        data[200] ^= 0x10  # damage inside the second frame: a live file is not rewritten under its writer
        path.write_bytes(bytes(data))
        refused = run_cli("repair", path)
        assert refused.returncode == 1 and "being written" in refused.stderr
        assert path.stat().st_size == size
    finally:
        writer.close()


def test_recording_from_another_model_is_refused_clearly(tmp_path):
    path = tmp_path / "other.ecr"
    write_recording(path, [fake_packet(i) for i in range(3)])
    result = run_cli("export", path, "-o", tmp_path / "png")
    assert result.returncode == 1
    assert "recorded with model 746573746d646c21" in result.stderr and "--model" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"", b"not a recording at all, just text" * 3])
def test_non_recordings_fail_with_a_message_not_a_traceback(tmp_path, content):
    path = tmp_path / "junk.ecr"
    path.write_bytes(content)
    for command in (["export", path, "-o", tmp_path / "png"], ["repair", path]):
        result = run_cli(*command)
        assert result.returncode == 1
        assert "junk.ecr" in result.stderr and "Traceback" not in result.stderr


def test_output_that_is_a_file_is_a_clear_error(recording, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    result = run_cli("export", recording, "-o", taken)
    assert result.returncode == 1 and "cannot create the output folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(recording, tmp_path):
    assert run_cli("export", recording).returncode == 2  # no -o
    assert run_cli("export", recording, "-o", tmp_path / "x", "-j", "0").returncode == 2


def test_repair_dry_run_changes_nothing_and_json_reports(recording, capsys):
    with open(recording, "ab") as f:
        f.write(b"\xe5ECF" + bytes(20))
    size = recording.stat().st_size
    assert main(["repair", str(recording), "--dry-run", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["action"] == "would be truncated" and row["frames"] == N and row["bytes_removed"] == 24
    assert recording.stat().st_size == size


def test_batch_decodes_ecc_files_in_two_processes_with_progress(tmp_path, packets, codec):
    inputs = []
    for i, packet in enumerate(packets[:4]):
        inputs.append(tmp_path / f"f{i}.ecc")
        inputs[-1].write_bytes(packet)
    (tmp_path / "bad.ecc").write_bytes(packets[0][:-3])
    inputs.append(tmp_path / "bad.ecc")
    seen = []
    summary = decode_files(inputs, [p.with_suffix(".png") for p in inputs], jobs=2,
                           progress=lambda done, total: seen.append((done, total)))
    assert (summary.frames, summary.failed) == (4, 1)
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert not (tmp_path / "bad.png").exists()
    results = list(decode_batch([DecodeTask(str(inputs[1]))]))
    assert results[0].ok and np.array_equal(results[0].image, codec.decode(packets[1]))
