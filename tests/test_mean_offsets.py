"""Tables centred at the predicted mean's fraction: exact integer offset indices, and a model that uses them
codes the same latents in fewer bytes. Uses the committed models, with offsets added when they have none."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

from edgecodec.codec import Codec
from edgecodec.entropy import CdfTables
from edgecodec.errors import ModelError
from edgecodec.models import ModelBundle, contract, default_model_dir
from edgecodec.models.hyper import HyperSynthesis
from tests.test_codec import _hyper_arrays_with_mean, synthetic_photo


def _write_offsets(folder, steps):
    with np.load(folder / "hyper.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["mean_steps"] = np.array(steps, np.int32)
    np.savez(folder / "hyper.npz", **arrays)
    CdfTables.from_pmfs(*contract.latent_pmfs(steps)).save(folder / contract.CDF_Y)
    _rehash(folder)


def _rehash(folder):
    """Give the manifest the id of the files as they now are."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model_id"] = ModelBundle(folder, manifest).compute_id().hex()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _copy_models(folder, steps):
    """The committed model folder with ``steps`` mean offsets (0: zero-centred tables only)."""
    shutil.copytree(default_model_dir(), folder, ignore=shutil.ignore_patterns("checkpoint", "*.py", "__pycache__"))
    _write_offsets(folder, steps)
    return folder


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(codec with zero-centred tables, codec with tables at 1/8 offsets), same weights."""
    base = tmp_path_factory.mktemp("offsets")
    plain = Codec.load(_copy_models(base / "plain", 0), threads=2)
    offset = Codec.load(_copy_models(base / "offset", contract.MEAN_STEPS), threads=2)
    return plain, offset


def test_offset_index_is_the_mean_fraction_rounded_to_the_nearest_step():
    arrays = _hyper_arrays_with_mean(np.random.default_rng(5))
    arrays["mean_steps"] = np.array(8)
    hyper = HyperSynthesis(arrays)
    shift, half = contract.HYPER_SHIFT, 1 << (contract.HYPER_SHIFT - 1)
    rng = np.random.default_rng(7)
    exact_mean = rng.integers(-(100 << shift), 100 << shift, 5000)  # fixed point, no rounding half yet
    exact_mean[:4] = [0, half - 1, half, -half]  # fractions 0, just under +1/2, +1/2, -1/2
    level = rng.integers(0, contract.SCALE_LEVELS, exact_mean.shape)
    idx, mean = hyper.finish((level << shift) + half, exact_mean + half)
    for m_fx, lv, i, m in zip(exact_mean, level, idx, mean):
        value = Fraction(int(m_fx), 1 << shift)
        assert m == int(np.floor(value + Fraction(1, 2)))  # the mean rounds half up
        frac = value - m  # in [-1/2, 1/2)
        assert i == lv * 9 + int(np.floor(frac * 8 + Fraction(1, 2))) + 4


def test_offset_tables_are_centred_where_their_index_says():
    pmfs, offsets, _ = contract.latent_pmfs(8)
    values = np.arange(pmfs.shape[1]) + offsets[:, None]
    centres = (pmfs * values).sum(1) / pmfs.sum(1)
    level = 40  # wide enough that the discretized mean follows the centre closely
    assert np.allclose(centres[level * 9:(level + 1) * 9], contract.mean_offsets(8), atol=1e-3)


def test_offset_tables_code_the_same_latents_in_fewer_bytes(both):
    plain, offset = both
    img = synthetic_photo(256, 320, seed=3)
    for q in (0, plain.qualities[-1]):
        a, b = plain.encode(img, q), offset.encode(img, q)
        assert np.array_equal(plain.decode(a), offset.decode(b))
        assert len(b) < len(a)


def test_decoder_picks_the_encoders_offset_tables_under_other_thread_counts(both):
    _, offset = both
    other = Codec.load(offset.bundle.dir, threads=1)
    img = synthetic_photo(96, 144, seed=4)
    packet = offset.encode(img, 2)
    assert np.array_equal(other.decode(packet), offset.decode(packet))


def test_model_whose_table_count_does_not_match_its_offsets_is_refused(tmp_path):
    folder = _copy_models(tmp_path / "m", contract.MEAN_STEPS)
    CdfTables.from_pmfs(*contract.latent_pmfs(0)).save(folder / contract.CDF_Y)
    _rehash(folder)
    with pytest.raises(ModelError, match="tables"):
        Codec.load(folder).encode(synthetic_photo(32, 32), 0)


@pytest.mark.parametrize("steps", [3, 66, -2])
def test_odd_or_out_of_range_offset_steps_are_refused(steps):
    arrays = _hyper_arrays_with_mean(np.random.default_rng(5))
    arrays["mean_steps"] = np.array(steps)
    with pytest.raises(ModelError, match="mean_steps"):
        HyperSynthesis(arrays)
