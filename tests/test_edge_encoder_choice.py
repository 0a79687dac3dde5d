"""The edge's encoder: int8, its float twin, or whichever of the two is faster here."""
from __future__ import annotations

import logging

import pytest

from edgecodec.edge.encoder import load_codec
from edgecodec.evaluate import psnr
from edgecodec.testscene import TestScene


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_an_explicit_encoder_is_used_without_timing(kind, caplog):
    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    assert load_codec("", 1, kind, 64, 48).encoder_kind == kind
    assert "using" not in caplog.text


def test_auto_times_both_encoders_and_keeps_the_faster(caplog):
    caplog.set_level(logging.INFO, logger="edgecodec.edge.encoder")
    codec = load_codec("", 1, "auto", 128, 96, runs=3)
    line = next(r.getMessage() for r in caplog.records if "using" in r.getMessage())
    ms = {kind: float(line.split(f"{kind} ")[1].split(" ms")[0]) for kind in ("int8", "float")}
    assert codec.encoder_kind == min(ms, key=ms.get)
    assert line.endswith(f"using {codec.encoder_kind}")


def test_both_encoders_write_streams_the_same_decoder_reads_to_nearly_the_same_quality():
    image = TestScene(160, 128).render(0)
    packets = {kind: load_codec("", 1, kind, 160, 128).encode(image, 4) for kind in ("int8", "float")}
    assert packets["int8"] != packets["float"]
    decoder = load_codec("", 1, "int8", 160, 128)
    db = {kind: psnr(image, decoder.decode(packet)) for kind, packet in packets.items()}
    assert min(db.values()) > 25 and abs(db["int8"] - db["float"]) < 1.0
