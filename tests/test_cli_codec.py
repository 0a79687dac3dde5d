"""``edgecodec encode/decode/info/eval`` as a user runs them: real files, exit codes, messages, JSON."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from edgecodec.cli import main
from tests.test_codec import synthetic_photo


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgecodec", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), synthetic_photo(96, 128, seed=1))
    cv2.imwrite(str(folder / "b.png"), synthetic_photo(70, 50, seed=2)[:, :, 0])
    return folder


def test_encode_then_decode_single_file(photos, tmp_path, capsys):
    ecc, png = tmp_path / "a.ecc", tmp_path / "a_out.png"
    assert main(["encode", str(photos / "a.png"), "-o", str(ecc), "-q", "4"]) == 0
    assert main(["decode", str(ecc), "-o", str(png)]) == 0
    assert cv2.imread(str(png)).shape == (96, 128, 3)
    assert "bpp" in capsys.readouterr().out


def test_batch_encode_and_decode_folders_with_json_report(photos, tmp_path, capsys):
    out = tmp_path / "ecc"
    assert main(["encode", str(photos), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == 0 and len(report["files"]) == 2
    assert all(f["bytes"] == (out / f"{name}.ecc").stat().st_size for f, name in zip(report["files"], "ab"))
    assert main(["decode", str(out / "*.ecc"), "-o", str(tmp_path / "png"), "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)["files"]
    assert {(d["width"], d["height"]) for d in decoded} == {(128, 96), (50, 70)}
    assert cv2.imread(str(tmp_path / "png" / "b.png"), cv2.IMREAD_UNCHANGED).ndim == 2


def test_info_prints_header_fields_as_json(photos, tmp_path, capsys):
    ecc = tmp_path / "a.ecc"
    main(["encode", str(photos / "a.png"), "-o", str(ecc), "-q", "2", "--quiet"])
    assert main(["info", str(ecc), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["quality"], info["kind"]) == (128, 96, 2, "image")
    assert info["bytes"] == ecc.stat().st_size


def test_eval_reports_every_quality_from_real_bytes(photos, capsys):
    assert main(["eval", str(photos), "--qualities", "0,7", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["per_quality"]
    assert [r["quality"] for r in rows] == [0, 7]
    assert rows[0]["bpp"] < rows[1]["bpp"] and rows[0]["psnr"] < rows[1]["psnr"]


def test_corrupt_file_exits_1_with_one_line_message(photos, tmp_path):
    ecc = tmp_path / "a.ecc"
    main(["encode", str(photos / "a.png"), "-o", str(ecc), "--quiet"])
    data = bytearray(ecc.read_bytes())
    data[60] ^= 0xFF
    ecc.write_bytes(bytes(data))
    res = run_cli("decode", ecc, "-o", tmp_path / "x.png")
    assert res.returncode == 1
    assert "CRC" in res.stderr or "corrupt" in res.stderr.lower()
    assert "Traceback" not in res.stderr


def test_truncated_and_non_ecc_files_exit_1_without_traceback(tmp_path):
    (tmp_path / "junk.ecc").write_bytes(b"hello, not a codec stream")
    res = run_cli("info", tmp_path / "junk.ecc")
    assert res.returncode == 1 and "Traceback" not in res.stderr and "junk.ecc" in res.stderr


def test_missing_input_and_wrong_model_folder_exit_1(tmp_path):
    res = run_cli("encode", tmp_path / "nope.png", "-o", tmp_path / "x.ecc")
    assert res.returncode == 1 and "cannot read" in res.stderr
    res = run_cli("decode", tmp_path / "nope.ecc", "--model", tmp_path)
    assert res.returncode == 1 and "no model" in res.stderr and "Traceback" not in res.stderr


def test_usage_errors_exit_2_and_help_exits_0():
    assert run_cli("encode").returncode == 2
    assert run_cli("frobnicate").returncode == 2
    res = run_cli("encode", "--help")
    assert res.returncode == 0 and "--quality" in res.stdout


def test_parallel_decode_of_a_folder_matches_serial_decode(photos, tmp_path):
    assert main(["encode", str(photos), "-o", str(tmp_path / "ecc"), "--quiet"]) == 0
    assert main(["decode", str(tmp_path / "ecc"), "-o", str(tmp_path / "one"), "--quiet"]) == 0
    assert main(["decode", str(tmp_path / "ecc"), "-o", str(tmp_path / "two"), "-j", "2", "--quiet"]) == 0
    for name in ("a.png", "b.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


# --- video clips: encode to a recording in stream mode, export back --------------------------------

CLIP_W, CLIP_H, CLIP_N, CLIP_FPS = 96, 64, 24, 8.0


@pytest.fixture()
def clip(tmp_path):
    """A small MJPG .avi of the synthetic scene, as a user's camera clip."""
    from edgecodec.testscene import TestScene

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (CLIP_W, CLIP_H))
    assert writer.isOpened()
    scene = TestScene(CLIP_W, CLIP_H)
    for i in range(CLIP_N):
        writer.write(cv2.cvtColor(scene.render(int(i * 1e6 / CLIP_FPS)), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_encode_a_video_clip_writes_every_frame_to_a_stream_recording(clip, tmp_path, capsys):
    from edgecodec.recording import RecordingReader

    ecr = tmp_path / "clip.ecr"
    assert main(["encode", str(clip), "-o", str(ecr), "-q", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == CLIP_N and report["fps"] == CLIP_FPS
    assert (report["key_frames"], report["delta_frames"]) == (2, CLIP_N - 2)  # every 2 s of the clip
    assert report["file_bytes"] == ecr.stat().st_size and report["bytes"] < report["file_bytes"]
    assert report["kbit_s"] == pytest.approx(report["bytes"] * 8 / 1000 / (CLIP_N / CLIP_FPS), rel=1e-3)
    with RecordingReader(ecr) as reader:
        frames = reader.scan().frames
    assert [f.sequence for f in frames] == list(range(CLIP_N))
    assert [f.timestamp_us for f in frames] == [round(i * 1e6 / CLIP_FPS) for i in range(CLIP_N)]
    assert [i for i, f in enumerate(frames) if f.key] == [0, 16]


def test_encode_clip_options_intra_and_key_interval(clip, tmp_path, capsys):
    assert main(["encode", str(clip), "-o", str(tmp_path / "i.ecr"), "--intra", "--json"]) == 0
    intra = json.loads(capsys.readouterr().out)
    assert (intra["key_frames"], intra["delta_frames"], intra["mode"]) == (CLIP_N, 0, "intra")
    assert main(["encode", str(clip), "-o", str(tmp_path / "k.ecr"), "--key-interval", "0.5", "--json"]) == 0
    keyed = json.loads(capsys.readouterr().out)
    assert keyed["key_frames"] == CLIP_N // 4 and keyed["bytes"] < intra["bytes"]
    assert main(["encode", str(clip), "-o", str(tmp_path / "f.ecr"), "--fps", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key_frames"] == 3  # 24 frames at 4 frames/s: keys at 0, 2, 4 s


def test_clip_encodes_and_exports_back_to_pngs_and_a_video(clip, tmp_path):
    ecr = tmp_path / "clip.ecr"
    res = run_cli("encode", clip, "-o", ecr, "-q", "4")
    assert res.returncode == 0, res.stderr
    assert f"{CLIP_N} frames (2 key frames)" in res.stdout and "kbit/s" in res.stdout
    res = run_cli("export", ecr, "-o", tmp_path / "png")
    assert res.returncode == 0, res.stderr
    pngs = sorted((tmp_path / "png").iterdir())
    assert len(pngs) == CLIP_N and cv2.imread(str(pngs[-1])).shape == (CLIP_H, CLIP_W, 3)
    res = run_cli("export", ecr, "-o", tmp_path / "back.mp4")
    assert res.returncode == 0, res.stderr
    cap = cv2.VideoCapture(str(tmp_path / "back.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(CLIP_FPS, rel=0.01)
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == CLIP_N


def test_encoding_a_clip_again_replaces_the_recording(clip, tmp_path, capsys):
    ecr = tmp_path / "clip.ecr"
    assert main(["encode", str(clip), "-o", str(ecr), "-q", "0", "--quiet"]) == 0
    small = ecr.stat().st_size
    assert main(["encode", str(clip), "-o", str(ecr), "-q", "6", "--quiet"]) == 0
    assert ecr.stat().st_size > small
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_clip_errors_are_one_line_and_exit_1_usage_errors_exit_2(clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not really a video" * 10)
    for args in ([tmp_path / "missing.mp4"], [broken], [clip, "-q", "99"]):
        res = run_cli("encode", *args, "-o", tmp_path / "x.ecr")
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("edgecodec encode: error:")
    assert "cannot read video" in run_cli("encode", broken, "-o", tmp_path / "x.ecr").stderr
    assert not (tmp_path / "x.ecr").exists()
    for bad in (["--key-interval", "0"], ["--key-interval", "abc"], ["--fps", "-1"]):
        res = run_cli("encode", clip, "-o", tmp_path / "x.ecr", *bad)
        assert res.returncode == 2 and "Traceback" not in res.stderr, bad
