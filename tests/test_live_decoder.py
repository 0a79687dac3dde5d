"""The live decoder: a faster synthesis for the same bitstream, checked by its own hash."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgecodec.codec import Codec
from edgecodec.errors import ModelError
from edgecodec.evaluate import psnr
from edgecodec.models import ModelBundle, default_model_dir
from edgecodec.testscene import TestScene

MODELS = default_model_dir()
pytestmark = pytest.mark.skipif(not ModelBundle.load(MODELS).has_live_decoder,
                                reason="the shipped model has no live decoder")


@pytest.fixture(scope="module")
def scene():
    return TestScene(320, 240).render(500_000)


@pytest.fixture(scope="module")
def codecs():
    return Codec.load(threads=1, decoder="full"), Codec.load(threads=1, decoder="live")


def copy_models(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder, ignore=shutil.ignore_patterns("checkpoint", "__*"))
    return folder


def test_live_decoder_reads_the_full_decoders_bitstream_at_a_small_psnr_cost(codecs, scene):
    full, live = codecs
    packet = full.encode(scene, 4)
    assert live.encode(scene, 4) == packet  # the encoder side is the same
    a, b = full.decode(packet), live.decode(packet)
    assert b.shape == a.shape == scene.shape
    assert not np.array_equal(a, b)  # a different synthesis really ran
    assert psnr(scene, b) > psnr(scene, a) - 2.0
    assert psnr(scene, b) > 25.0


def test_auto_picks_the_live_decoder_where_the_model_has_one(tmp_path):
    assert Codec.load(decoder="auto").decoder_kind == "live"
    folder = copy_models(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["live_decoder"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert Codec.load(folder, decoder="auto").decoder_kind == "full"
    with pytest.raises(ModelError, match="no live decoder"):
        Codec.load(folder, decoder="live")


def test_adding_the_live_decoder_leaves_the_model_id_alone(tmp_path):
    folder = copy_models(tmp_path)
    with_live = ModelBundle.load(folder)
    (folder / "decoder_live.tflite").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["live_decoder"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert ModelBundle.load(folder).model_id == with_live.model_id


def test_altered_live_decoder_is_refused_by_its_hash(tmp_path, scene):
    folder = copy_models(tmp_path)
    path = folder / "decoder_live.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    codec = Codec.load(folder, decoder="live")
    packet = codec.encode(scene, 2)
    with pytest.raises(ModelError, match="SHA-256"):
        codec.decode(packet)


@pytest.mark.parametrize("name", ["../decoder.tflite", "/etc/passwd", ".hidden", 7])
def test_live_decoder_file_names_outside_the_folder_are_refused(tmp_path, scene, name):
    folder = copy_models(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["live_decoder"]["file"] = name
    (folder / "manifest.json").write_text(json.dumps(manifest))
    codec = Codec.load(folder, decoder="live")
    with pytest.raises(ModelError, match="bad live decoder file name"):
        codec.decode(codec.encode(scene, 2))


def test_unknown_decoder_name_is_refused():
    with pytest.raises(Exception, match="decoder must be"):
        Codec.load(decoder="fastest")


def test_cli_decode_with_the_live_decoder_writes_the_image(tmp_path, scene):
    import cv2

    src = tmp_path / "scene.png"
    cv2.imwrite(str(src), scene[:, :, ::-1])
    run = [sys.executable, "-m", "edgecodec"]
    subprocess.run([*run, "encode", str(src), "-o", str(tmp_path / "scene.ecc"), "--quiet"], check=True)
    for kind in ("full", "live"):
        out = tmp_path / f"{kind}.png"
        subprocess.run([*run, "decode", str(tmp_path / "scene.ecc"), "-o", str(out), "--decoder", kind,
                        "--quiet"], check=True)
        assert cv2.imread(str(out)).shape == scene.shape
    assert not np.array_equal(cv2.imread(str(tmp_path / "full.png")), cv2.imread(str(tmp_path / "live.png")))
    bad = subprocess.run([*run, "decode", str(tmp_path / "scene.ecc"), "--decoder", "fastest"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
