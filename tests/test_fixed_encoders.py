"""Fixed-shape int8 encoders (for accelerators such as the Edge TPU) and TFLite delegates."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edgecodec.codec import Codec
from edgecodec.models import ModelBundle, contract
from edgecodec.models.interpreter import _Interpreter
from edgecodec.testscene import TestScene

SIZES = [(480, 640), (720, 1280)]


class DynamicOnly(ModelBundle):
    def fixed_encoder_sizes(self, quality):
        return []


@pytest.fixture(scope="module")
def bundle():
    return ModelBundle.load()


def test_the_shipped_model_has_fixed_encoders_for_common_camera_sizes(bundle):
    for q in bundle.qualities:
        assert sorted(bundle.fixed_encoder_sizes(q)) == SIZES


@pytest.mark.parametrize("size", SIZES)
def test_a_fixed_encoder_writes_the_same_bytes_as_the_dynamic_one(bundle, size):
    frame = TestScene(size[1], size[0]).render(9)
    for q in (0, 4, 8):
        fixed = bundle.int8_analysis(bundle.fixed_encoder(q, size, 1), 1).run(frame[None])
        dynamic = bundle.int8_analysis(bundle.manifest["qualities"][q]["encoder"], 1).run(frame[None])
        assert all(np.array_equal(a, b) for a, b in zip(fixed, dynamic))
    codec, dynamic_only = Codec(bundle, threads=1), Codec(DynamicOnly.load(), threads=1)
    assert codec.encode(frame, 4) == dynamic_only.encode(frame, 4)
    assert bundle.fixed_encoder(4, size).endswith(contract.fixed_encoder_name(4, size[1], size[0]))


@pytest.mark.parametrize("size", SIZES)
def test_fixed_encoders_have_static_shapes_and_the_edge_tpu_op_set(bundle, size):
    path = bundle.dir / contract.fixed_encoder_name(2, size[1], size[0])
    interp = _Interpreter(model_path=str(path))
    assert {op["op_name"] for op in interp._get_ops_details()} == {"QUANTIZE", "SPACE_TO_DEPTH", "CONV_2D"}
    assert all(-1 not in t["shape_signature"].tolist() for t in interp.get_tensor_details())
    assert list(interp.get_input_details()[0]["shape"]) == [1, *size, 3]


def test_other_sizes_and_the_float_and_fast_encoders_stay_dynamic(bundle):
    assert bundle.encoder(4, 1, size=(496, 640)).path.endswith(bundle.manifest["qualities"][4]["encoder"])
    assert bundle.encoder(4, 1, "float", size=(480, 640)).path.endswith(contract.FLOAT_ENCODER)


def test_a_missing_delegate_falls_back_to_the_cpu_with_one_warning(bundle, caplog):
    frame = TestScene(96, 64).render(1)
    with caplog.at_level(logging.WARNING):
        codec = Codec(bundle, threads=1, delegate="libno_such_delegate.so.1")
        packet = codec.encode(frame, 3)
        codec.encode(frame, 5)
    assert packet == Codec(bundle, threads=1).encode(frame, 3)
    warnings = [r.getMessage() for r in caplog.records if "libno_such_delegate" in r.getMessage()]
    assert len(warnings) == 1 and "running the encoder on the CPU" in warnings[0]


def test_the_edge_and_the_cli_take_a_delegate_and_fall_back_to_the_cpu(tmp_path):
    import subprocess
    import sys

    import cv2

    from edgecodec.edge.encoder import load_codec

    codec = load_codec("", 1, "auto", 640, 480, delegate="libno_such_delegate.so.1")
    assert codec.delegate == "libno_such_delegate.so.1" and codec.encoder_kind == "int8"
    cv2.imwrite(str(tmp_path / "a.png"), TestScene(64, 48).render(2))
    run = subprocess.run([sys.executable, "-m", "edgecodec", "encode", "a.png", "-o", "a.ecc", "--delegate",
                          "libno_such_delegate.so.1"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and (tmp_path / "a.ecc").stat().st_size > 0
    assert "running the encoder on the CPU" in run.stderr
