"""The edge's encoder: full or fast analysis, int8 or float, or whichever suits this machine and frame rate."""
from __future__ import annotations

import logging

import pytest

from edgecodec.edge.encoder import choose_encoder, load_codec, time_encoders
from edgecodec.evaluate import psnr
from edgecodec.models import ModelBundle
from edgecodec.testscene import TestScene

HAS_FAST = ModelBundle.load().has_fast_encoder


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_an_explicit_encoder_is_used_without_timing(kind, caplog):
    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    codec = load_codec("", 1, kind, 64, 48, analysis="full")
    assert (codec.encoder_kind, codec.analysis) == (kind, "full")
    assert "using" not in caplog.text


def test_the_edge_says_which_kernels_run_the_entropy_model(caplog):
    from edgecodec.models import int8

    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    load_codec("", 1, "float", 64, 48, analysis="full")
    expected = "int8 kernel (AVX2)" if int8.AVAILABLE else "float32"
    assert any("hyper-synthesis and context products on" in r.getMessage() and expected in r.getMessage()
               for r in caplog.records)


def test_the_given_candidates_are_timed_on_a_frame_of_the_cameras_size():
    candidates = [("full", "int8"), ("full", "float")]
    ms = time_encoders(ModelBundle.load(), 1, 128, 96, candidates, runs=3)
    assert list(ms) == candidates and all(0 < v < 5000 for v in ms.values())


def test_auto_keeps_one_candidate_and_says_which(caplog):
    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    codec = load_codec("", 1, "auto", 128, 96, runs=1, analysis="auto")
    line = next(r.getMessage() for r in caplog.records if "using" in r.getMessage())
    assert codec.encoder_kind in ("int8", "float")
    assert codec.analysis == "full" or HAS_FAST
    assert line.endswith(f"using {codec.analysis} {codec.encoder_kind}")


def test_full_analysis_is_kept_while_it_needs_at_most_half_the_frame_period():
    ms = {("full", "int8"): 30.0, ("full", "float"): 14.0, ("fast", "int8"): 9.0, ("fast", "float"): 7.0}
    assert choose_encoder(ms, 1000 / 30)[0] == ("full", "float")  # 14 ms <= 16.7 ms
    assert choose_encoder(ms, 1000 / 60)[0] == ("fast", "float")  # 14 ms > 8.3 ms
    chosen, why = choose_encoder(ms, 1000 / 60)
    assert "8.3 ms" in why and why.endswith("using fast float")


def test_a_slow_full_analysis_is_kept_when_there_is_no_fast_one():
    ms = {("full", "int8"): 300.0, ("full", "float"): 200.0}
    assert choose_encoder(ms, 1000 / 30)[0] == ("full", "float")
    assert choose_encoder({("fast", "int8"): 5.0, ("fast", "float"): 6.0}, 10.0)[0] == ("fast", "int8")


def test_both_precisions_write_streams_the_same_decoder_reads_to_nearly_the_same_quality():
    image = TestScene(160, 128).render(0)
    packets = {kind: load_codec("", 1, kind, 160, 128).encode(image, 4) for kind in ("int8", "float")}
    assert packets["int8"] != packets["float"]
    decoder = load_codec("", 1, "int8", 160, 128)
    db = {kind: psnr(image, decoder.decode(packet)) for kind, packet in packets.items()}
    assert min(db.values()) > 25 and abs(db["int8"] - db["float"]) < 1.0
