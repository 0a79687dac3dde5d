"""The shipped decoders run in one fixed order of float32 operations (edgecodec.models.synthesis): the
image is within a rounding of LiteRT's, and thread counts and CPU paths change no bit (the fallback to
LiteRT: tests/test_kernel_fallbacks.py)."""
from __future__ import annotations


import numpy as np
import pytest

from edgecodec.codec import Codec
from edgecodec.models import ModelBundle, contract, synthesis
from edgecodec.models.interpreter import TFLiteModel
from edgecodec.testscene import TestScene


@pytest.fixture(scope="module")
def bundle():
    return ModelBundle.load()


def latents(bundle, h=6, w=9, seed=0):
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 3, (1, h, w, bundle.manifest["config"]["latent"]))).astype(np.float32)


@pytest.mark.parametrize("name", [contract.DECODER, contract.LIVE_DECODER])
def test_the_image_is_litert_s_to_within_a_rounding(bundle, name):
    y = latents(bundle)
    (ours,) = synthesis.FixedOrderSynthesis(synthesis.Graph(bundle.dir / name), 2).run(y)
    (theirs,) = TFLiteModel(bundle.dir / name, 2).run(y)
    assert ours.shape == theirs.shape == (1, 96, 144, 3)
    assert float(np.abs(ours - theirs).max()) < 0.01  # of 255


def test_the_inverse_gdns_run_fused_with_their_depth_to_space(bundle):
    ops = synthesis.Graph(bundle.dir / contract.DECODER).ops
    names = [op.name for op in ops]
    assert names.count("GDN") == 3 and "SQRT" not in names
    assert all(op.block == 2 for op in ops if op.name == "GDN")  # each reads through its DEPTH_TO_SPACE
    assert names.count("DEPTH_TO_SPACE") == 1  # the last, before the output clamp


def test_threads_and_cpu_paths_change_no_bit(bundle, monkeypatch):
    y = latents(bundle, 8, 11, seed=1)
    graph = synthesis.Graph(bundle.dir / contract.DECODER)
    one = synthesis.FixedOrderSynthesis(graph, 1).run(y)[0]
    three = synthesis.FixedOrderSynthesis(graph, 3).run(y)[0]
    assert np.array_equal(one.view(np.uint32), three.view(np.uint32))
    real = synthesis._fixedpoint.conv_f32
    for path in (1, 2):  # the portable loop, AVX2 at most
        monkeypatch.setattr(synthesis._fixedpoint, "conv_f32", lambda *a, p=path: real(*a[:8], p, *a[9:]))
        other = synthesis.FixedOrderSynthesis(graph, 2).run(y)[0]
        assert np.array_equal(one.view(np.uint32), other.view(np.uint32)), f"path {path}"


def test_the_codec_decodes_on_the_fixed_order_synthesis(bundle):
    codec = Codec.load(threads=2)
    assert isinstance(codec.bundle.decoder("full", 2), synthesis.FixedOrderSynthesis)
    assert isinstance(codec.bundle.decoder("live", 2), synthesis.FixedOrderSynthesis)
    image = TestScene(176, 120).render(800_000)
    packet = codec.encode(image, 5)
    a, b = Codec.load(threads=1).decode(packet), codec.decode(packet)
    assert np.array_equal(a, b)


def test_the_synthesis_refuses_what_is_not_one_latent_array(bundle):
    model = bundle.decoder("full", 1)
    with pytest.raises(ValueError):
        model.run(np.zeros((6, 9, 128), np.float32))
    with pytest.raises(ValueError):
        model.run(np.zeros((1, 6, 9, 128), np.float64))
