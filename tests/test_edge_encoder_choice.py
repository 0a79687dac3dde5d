"""The edge's encoder: int8, its float twin, or whichever of the two is faster here."""
from __future__ import annotations

import logging

import pytest

from edgecodec.edge.encoder import load_codec, time_encoders
from edgecodec.evaluate import psnr
from edgecodec.models import ModelBundle
from edgecodec.testscene import TestScene


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_an_explicit_encoder_is_used_without_timing(kind, caplog):
    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    assert load_codec("", 1, kind, 64, 48).encoder_kind == kind
    assert "using" not in caplog.text


def test_both_encoders_are_timed_on_a_frame_of_the_cameras_size():
    ms = time_encoders(ModelBundle.load(), 1, 128, 96, runs=3)
    assert set(ms) == {"int8", "float"} and all(0 < v < 5000 for v in ms.values())


def test_auto_keeps_one_of_the_two_and_says_which(caplog):
    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    codec = load_codec("", 1, "auto", 128, 96, runs=1)
    line = next(r.getMessage() for r in caplog.records if "using" in r.getMessage())
    assert codec.encoder_kind in ("int8", "float") and line.endswith(f"using {codec.encoder_kind}")


def test_both_encoders_write_streams_the_same_decoder_reads_to_nearly_the_same_quality():
    image = TestScene(160, 128).render(0)
    packets = {kind: load_codec("", 1, kind, 160, 128).encode(image, 4) for kind in ("int8", "float")}
    assert packets["int8"] != packets["float"]
    decoder = load_codec("", 1, "int8", 160, 128)
    db = {kind: psnr(image, decoder.decode(packet)) for kind, packet in packets.items()}
    assert min(db.values()) > 25 and abs(db["int8"] - db["float"]) < 1.0
