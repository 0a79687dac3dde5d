"""The shipped int8 encoders run on edgecodec's own integer kernel (edgecodec.models.analysis), compute
exactly the latents of TFLite's reference kernels (the fallback to LiteRT: tests/test_kernel_fallbacks.py)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edgecodec.codec import Codec
from edgecodec.models import ModelBundle, analysis, contract
from edgecodec.models.interpreter import TFLiteModel, reference_interpreter
from edgecodec.testscene import TestScene


def reference_latents(path, image):
    interp = reference_interpreter(path)
    (inp,) = interp.get_input_details()
    interp.resize_tensor_input(inp["index"], image.shape, strict=False)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], image)
    interp.invoke()
    return [interp.get_tensor(d["index"]).astype(np.int32) for d in interp.get_output_details()]


@pytest.fixture(scope="module")
def bundle():
    return ModelBundle.load()


@pytest.mark.parametrize("name, size", [
    ("encoder_q0.tflite", (112, 160)), ("encoder_q4.tflite", (96, 208)), ("encoder_q8.tflite", (48, 64)),
    (contract.fast_encoder_name(2), (112, 160)), (contract.fast_encoder_name(7), (32, 96)),
])
def test_shipped_encoders_compute_the_reference_kernels_latents(bundle, name, size):
    h, w = size
    image = TestScene(w, h).render(1_300_000)[None]
    ours = analysis.ExactAnalysis(analysis.Graph(bundle.dir / name), threads=2).run(image)
    expected = reference_latents(bundle.dir / name, image)
    assert [a.shape for a in ours] == [b.shape for b in expected]
    for a, b in zip(ours, expected):
        assert np.array_equal(a, b)


def test_the_codec_encodes_on_the_exact_kernel_whatever_the_thread_count():
    image = TestScene(200, 136).render(400_000)
    one, two = Codec.load(threads=1), Codec.load(threads=2)
    assert isinstance(one.bundle.encoder(4, 1), analysis.ExactAnalysis)
    assert isinstance(one.bundle.encoder(3, 1, analysis="fast"), analysis.ExactAnalysis)
    assert one.encode(image, 4) == two.encode(image, 4)


def test_exact_latents_differ_from_xnnpacks_by_at_most_one_in_few_places(bundle):
    # What running LiteRT's XNNPACK kernels instead would change: rounding of a few requantizations.
    image = TestScene(320, 240).render(2_000_000)[None]
    ours = bundle.int8_analysis("encoder_q4.tflite", 2).run(image)
    xnn = TFLiteModel(bundle.dir / "encoder_q4.tflite", 2).run(image)
    y_ours, y_xnn = max(ours, key=lambda a: a.shape[1]), max(xnn, key=lambda a: a.shape[1])
    d = np.abs(y_ours - y_xnn)
    assert d.max() <= 3 and np.count_nonzero(d) < 0.05 * d.size


def test_an_absent_delegate_falls_back_to_the_exact_kernel(bundle, caplog):
    with caplog.at_level(logging.WARNING):
        model = bundle.encoder(4, 1, size=(480, 640), delegate="libno-such-delegate.so.1")
    assert isinstance(model, analysis.ExactAnalysis)
    assert any("libno-such-delegate" in r.getMessage() for r in caplog.records)


def test_the_analysis_refuses_what_is_not_one_uint8_image(bundle):
    model = bundle.int8_analysis("encoder_q4.tflite", 1)
    with pytest.raises(ValueError):
        model.run(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        model.run(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        model.run(np.zeros((1, 33, 32, 3), np.uint8))
