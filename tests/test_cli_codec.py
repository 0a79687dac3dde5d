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
