"""The fast encoder: a narrower analysis whose streams the model's own decoders read, checked by its hashes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edgecodec.bitstream import unpack
from edgecodec.codec import Codec
from edgecodec.errors import ModelError
from edgecodec.evaluate import psnr
from edgecodec.models import ModelBundle, default_model_dir
from edgecodec.testscene import TestScene

MODELS = default_model_dir()
pytestmark = pytest.mark.skipif(not ModelBundle.load(MODELS).has_fast_encoder,
                                reason="the shipped model has no fast encoder")


@pytest.fixture(scope="module")
def scene():
    return TestScene(320, 240).render(500_000)


def copy_models(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder, ignore=shutil.ignore_patterns("checkpoint", "__*"))
    return folder


def without_fast(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["fast_encoder"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("precision", ["int8", "float"])
def test_fast_encoder_streams_decode_with_the_models_decoders_at_a_small_psnr_cost(scene, precision):
    full = Codec.load(threads=1, encoder=precision)
    fast = Codec.load(threads=1, encoder=precision, analysis="fast")
    packet = fast.encode(scene, 4)
    assert packet != full.encode(scene, 4)  # another analysis really ran
    assert unpack(packet)[0].model_id == full.model_id
    for decoder in ("full", "live") if full.bundle.has_live_decoder else ("full",):
        decoded = Codec.load(threads=1, decoder=decoder).decode(packet)
        assert decoded.shape == scene.shape and psnr(scene, decoded) > 25.0
    db_full = psnr(scene, full.decode(full.encode(scene, 4)))
    assert psnr(scene, full.decode(packet)) > db_full - 1.5


def test_fast_encoder_needs_fewer_multiply_adds_than_the_full_one():
    entry = ModelBundle.load().manifest["fast_encoder"]
    full = ModelBundle.load().manifest["config"]["n_enc"]
    assert all(w <= f for w, f in zip(entry["widths"], full)) and list(entry["widths"]) != full[:2]


def test_adding_the_fast_encoder_leaves_the_model_id_alone(tmp_path):
    folder = copy_models(tmp_path)
    with_fast = ModelBundle.load(folder)
    for path in folder.glob("encoder_fast*.tflite"):
        path.unlink()
    without_fast(folder)
    assert ModelBundle.load(folder).model_id == with_fast.model_id


def test_a_model_without_a_fast_encoder_refuses_fast_analysis_and_auto_keeps_full(tmp_path):
    from edgecodec.edge.encoder import load_codec

    folder = copy_models(tmp_path)
    without_fast(folder)
    with pytest.raises(ModelError, match="no fast encoder"):
        Codec.load(folder, analysis="fast")
    assert load_codec(str(folder), 1, "float", 64, 48, runs=1, analysis="auto", fps=240).analysis == "full"


@pytest.mark.parametrize("precision, name", [("float", "encoder_fast.tflite"), ("int8", "encoder_fast_q2.tflite")])
def test_altered_fast_encoder_is_refused_by_its_hash(tmp_path, scene, precision, name):
    folder = copy_models(tmp_path)
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    codec = Codec.load(folder, encoder=precision, analysis="fast")
    with pytest.raises(ModelError, match="SHA-256"):
        codec.encode(scene, 2)


@pytest.mark.parametrize("name", ["../encoder_float.tflite", "/etc/passwd", ".hidden", 7, ""])
def test_fast_encoder_file_names_outside_the_folder_are_refused(tmp_path, scene, name):
    folder = copy_models(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["fast_encoder"]["float"]["file"] = name
    (folder / "manifest.json").write_text(json.dumps(manifest))
    codec = Codec.load(folder, encoder="float", analysis="fast")
    with pytest.raises(ModelError, match="bad fast encoder file name"):
        codec.encode(scene, 2)


@pytest.mark.parametrize("damage", ["truncated", "out of order"])
def test_a_manifest_missing_a_qualitys_fast_model_is_refused_clearly(tmp_path, scene, damage):
    folder = copy_models(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    int8 = manifest["fast_encoder"]["int8"]
    manifest["fast_encoder"]["int8"] = int8[:2] if damage == "truncated" else int8[::-1]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    codec = Codec.load(folder, encoder="int8", analysis="fast")
    with pytest.raises(ModelError, match="lacks its quality 2 model"):
        codec.encode(scene, 2)


def test_unknown_analysis_name_is_refused():
    with pytest.raises(Exception, match="analysis must be"):
        Codec.load(analysis="tiny")


def test_cli_encodes_with_the_fast_encoder_and_eval_reports_it(tmp_path, scene):
    import cv2

    src = tmp_path / "scene.png"
    cv2.imwrite(str(src), scene[:, :, ::-1])
    run = [sys.executable, "-m", "edgecodec"]
    for kind in ("full", "fast"):
        subprocess.run([*run, "encode", str(src), "-o", str(tmp_path / f"{kind}.ecc"), "--analysis", kind,
                        "--quiet"], check=True)
    assert (tmp_path / "full.ecc").read_bytes() != (tmp_path / "fast.ecc").read_bytes()
    subprocess.run([*run, "decode", str(tmp_path / "fast.ecc"), "-o", str(tmp_path / "fast.png"), "--quiet"],
                   check=True)
    assert cv2.imread(str(tmp_path / "fast.png")).shape == scene.shape
    report = subprocess.run([*run, "eval", str(tmp_path), "--analysis", "fast", "--qualities", "3", "--json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(report.stdout)["analysis"] == "fast"


def test_check_config_explains_fast_analysis_on_a_model_without_one(tmp_path, capsys):
    from edgecodec.cli import main
    from tests.stream_support import SECRET

    folder = copy_models(tmp_path)
    without_fast(folder)
    config = tmp_path / "edge.toml"
    config.write_text(f'[link]\nsecret = "{SECRET}"\n[spool]\ndir = "{tmp_path / "spool"}"\n')
    args = ["edge", "--config", str(config), "--check-config", "--model", str(folder)]
    assert main(args + ["--analysis", "auto"]) == 0
    capsys.readouterr()
    assert main(args + ["--analysis", "fast"]) == 1
    assert '[encode] analysis = "fast": the model in' in capsys.readouterr().err
