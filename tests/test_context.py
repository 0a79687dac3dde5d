"""The checkerboard context model: exact integer corrections, two-pass coding, and agreement of encoder and
decoder on every table. Uses the committed models, with context taps added when they carry none."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.codec import Codec, pad_image
from edgecodec.errors import EdgecodecError, ModelError
from edgecodec.models import ModelBundle, default_model_dir
from edgecodec.models.context import TAPS, CheckerboardContext, anchors, passes
from tests.test_codec import check_forged_streams_never_crash, synthetic_photo


def context_arrays(rng, qualities, latent):
    """Random int8 taps with multipliers that move indices and means by a few steps, like trained ones."""
    return {
        "ctx_w": rng.integers(-127, 128, (qualities, TAPS, latent, 2 * latent)).astype(np.int8),
        "ctx_mult": np.concatenate([np.full((qualities, latent), 600), np.full((qualities, latent), 400)], 1),
        "ctx_offset": rng.integers(-(1 << 23), 1 << 23, (qualities, 2 * latent)),
    }


@pytest.fixture(scope="module")
def context_model(tmp_path_factory):
    """The committed model folder, with context taps added unless it has them, and its id recomputed."""
    folder = tmp_path_factory.mktemp("ctx") / "model"
    shutil.copytree(default_model_dir(), folder, ignore=shutil.ignore_patterns("checkpoint", "*.py", "__pycache__"))
    bundle = ModelBundle.load(folder)
    if bundle.context is None:
        with np.load(folder / "hyper.npz") as data:
            arrays = {k: data[k] for k in data.files}
        hyper = bundle.hyper
        arrays.update(context_arrays(np.random.default_rng(3), hyper.qualities, hyper.latent_channels))
        np.savez(folder / "hyper.npz", **arrays)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["model_id"] = ModelBundle(folder, manifest).compute_id().hex()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_anchors_alternate_like_a_checkerboard_starting_at_the_origin():
    a = anchors(3, 4)
    assert a.tolist() == [[True, False, True, False], [False, True, False, True], [True, False, True, False]]


def test_context_correction_is_the_exact_integer_sum_of_the_four_neighbours():
    rng = np.random.default_rng(1)
    q, m = 2, 96
    arrays = context_arrays(rng, q, m)
    arrays["ctx_w"][1] = 127  # worst case for exactness: full-range weights and latents
    ctx = CheckerboardContext(arrays, m, q)
    y = rng.integers(-128, 128, (6, 7, m))
    y[y > 0] = 127
    y[y < 0] = -128
    targets = ~anchors(6, 7)
    for quality in range(q):
        padded = np.pad(y, ((1, 1), (1, 1), (0, 0))).astype(np.int64)
        w = arrays["ctx_w"][quality].astype(np.int64)
        expected = []
        for r, c in zip(*np.nonzero(targets)):
            r, c = r + 1, c + 1
            neigh = [padded[r - 1, c], padded[r, c - 1], padded[r, c + 1], padded[r + 1, c]]
            acc = sum(n @ w[t] for t, n in enumerate(neigh))
            expected.append(acc * arrays["ctx_mult"][quality] + arrays["ctx_offset"][quality])
        assert np.array_equal(ctx.correction(y, quality, targets), np.array(expected))


def test_context_of_the_wrong_shape_or_too_wide_is_refused():
    rng = np.random.default_rng(2)
    arrays = context_arrays(rng, 2, 8)
    with pytest.raises(ModelError, match="shapes"):
        CheckerboardContext(arrays, 8, 3)
    arrays.pop("ctx_mult")
    with pytest.raises(ModelError, match="lacks"):
        CheckerboardContext(arrays, 8, 2)
    with pytest.raises(ModelError, match="too wide"):
        CheckerboardContext(context_arrays(rng, 1, 300), 300, 1)


def test_context_model_codes_three_streams_and_decodes_the_encoders_latents(context_model):
    """Encoder (1 thread) and a fresh decoder (2 threads) agree on every table and mean: the decoded
    latents equal the encoder's exactly, at every quality."""
    enc = Codec.load(context_model, threads=1)
    img = synthetic_photo(160, 224, seed=8)
    for q in enc.qualities:
        packet = enc.encode(img, q)
        header, streams = bitstream.unpack(packet)
        assert len(streams) == 3
        dec = Codec.load(context_model, threads=2)
        y, _ = enc.analyse(pad_image(img), q)
        assert np.array_equal(dec.decode_latents(header, streams), y)
        assert dec.decode(packet).shape == img.shape


def test_second_pass_tables_and_means_come_from_the_decoded_anchors(context_model):
    """Non-anchor tables differ from the hyper-synthesis' own, and follow the anchors' values."""
    codec = Codec.load(context_model)
    y, z = codec.analyse(pad_image(synthetic_photo(seed=9)), 4)
    coder = codec.entropy_model.frame(z, y.shape, 4)
    others = ~anchors(*y.shape[:2])
    rows = passes(*y.shape[:2])[1]
    hyper_only = coder.tables(0, y, rows)
    refined = coder.tables(1, y, rows)
    assert not np.array_equal(refined[0], hyper_only[0]) and not np.array_equal(refined[1], hyper_only[1])
    moved = y.copy()
    moved[anchors(*y.shape[:2])] += 5
    assert not np.array_equal(coder.tables(1, moved, rows)[1], refined[1])
    y_others_changed = y.copy()
    y_others_changed[others] += 5
    assert np.array_equal(coder.tables(1, y_others_changed, rows)[0], refined[0])


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (3, 4000, 3)])
def test_context_model_round_trips_odd_sizes(context_model, shape):
    codec = Codec.load(context_model)
    img = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    assert codec.decode(codec.encode(img, 3)).shape == shape


def test_context_model_refuses_packets_with_the_wrong_stream_count(context_model):
    codec = Codec.load(context_model)
    header, streams = bitstream.unpack(codec.encode(synthetic_photo(), 2))
    with pytest.raises(EdgecodecError, match="expected 3 coded streams"):
        codec.decode_parts(header, streams[:2])


def test_forged_context_streams_never_crash(context_model):
    check_forged_streams_never_crash(Codec.load(context_model), seed=6)


def test_context_without_a_mean_head_is_refused(context_model, tmp_path):
    shutil.copytree(context_model, tmp_path / "m")
    with np.load(tmp_path / "m" / "hyper.npz") as data:
        arrays = {k: data[k] for k in data.files if k not in ("mean_mult", "mean_steps")}
    last = sum(1 for k in arrays if k.startswith("w")) - 1
    m = arrays[f"m{last}"].shape[0]
    arrays[f"w{last}"] = arrays[f"w{last}"][..., :m]
    arrays[f"b{last}"] = arrays[f"b{last}"][:m]
    np.savez(tmp_path / "m" / "hyper.npz", **arrays)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest.pop("hyper_convs", None)
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="needs the mean head"):
        Codec(ModelBundle.load(tmp_path / "m", verify=False))


FORK_AFTER_SPLIT = """
import multiprocessing as mp, numpy as np
from edgecodec.models.blas import matmul
a, b = np.arange(6400, dtype=np.float32).reshape(200, 32) % 7, np.ones((32, 8), np.float32)
def child(_):
    return float(matmul(a, b, 2).sum())
parent = child(0)
with mp.get_context("fork").Pool(2) as pool:
    print(pool.map(child, range(2)) == [parent, parent])
"""


def test_split_product_equals_the_whole_and_still_runs_in_a_forked_child():
    """Row-split products give the same sums; a child forked after the helper threads started must not
    wait forever on threads it did not inherit."""
    from edgecodec.models.blas import matmul

    rng = np.random.default_rng(8)
    a = rng.integers(-128, 128, (301, 512)).astype(np.float32)
    b = rng.integers(-127, 128, (512, 256)).astype(np.float32)
    assert np.array_equal(matmul(a, b, 1), matmul(a, b, 2))
    out = subprocess.run([sys.executable, "-c", FORK_AFTER_SPLIT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
