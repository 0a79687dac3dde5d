"""Both of edgecodec's own runners (the int8 analysis, the fixed-order synthesis) step aside for LiteRT,
saying so once, where a graph holds what they do not run, and when the environment asks for LiteRT."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from edgecodec.models import ModelBundle, analysis, contract, synthesis
from edgecodec.models.interpreter import TFLiteModel

RUNNERS = [  # (module, a file of the other kind, the environment variable, a bundle call that loads one)
    (analysis, contract.FLOAT_ENCODER, "EDGECODEC_LITERT_INT8", "encoder(4, 1)"),
    (synthesis, "encoder_q4.tflite", "EDGECODEC_LITERT_SYNTHESIS", "decoder('full', 1)"),
]


@pytest.mark.parametrize("module, other, _var, _call", RUNNERS)
def test_a_graph_it_does_not_run_falls_back_to_litert_with_a_warning(module, other, _var, _call, caplog):
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        model = module.load(ModelBundle.load().dir / other, 1)
    assert isinstance(model, TFLiteModel)
    assert [r.getMessage() for r in caplog.records if "LiteRT's kernels" in r.getMessage()]


@pytest.mark.parametrize("_module, _other, var, call", RUNNERS)
def test_the_environment_can_ask_for_litert_kernels(_module, _other, var, call):
    code = f"from edgecodec.models import ModelBundle; print(type(ModelBundle.load().{call}).__name__)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **{var: "1"}), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "TFLiteModel"
