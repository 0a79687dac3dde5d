"""Streams encoded on aarch64 (Debian bookworm arm64 under qemu, `.ci/aarch64.sh`) decode here to the
recorded pixels, and this machine's encoder writes the same bytes from the same source images.

The sources are generated, not read: `edgecodec.testscene.TestScene` frames (and a gray and an RGBA
variant), so both machines start from identical pixels (their SHA-256 is recorded and checked too).
tests/data/aarch64/golden.json holds, per still and per stream packet, the SHA-256 of the source
pixels, of the encoded bytes and of the decoded pixels, as aarch64 produced them, and the model id
they were written with: a different shipped model writes other bytes, so the tests skip then.

The same file is the tool `.ci/aarch64.sh` runs on both machines for the wider cross-check:
    python tests/test_aarch64_golden.py write DIR [--wide]   encode the cases into DIR (+ cases.json)
    python tests/test_aarch64_golden.py check DIR            re-encode DIR's sources here, decode its
                                                             packets here; exit 1 on any difference
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "aarch64"
STEP_US = 100_000  # stream frames at 10 frames/s

# (width, height, render timestamp in us, form, quality, analysis): the committed golden stills.
STILLS = [
    (320, 240, 1_500_000, "rgb", 4, "full"),
    (97, 61, 250_000, "rgb", 0, "full"),
    (130, 47, 4_000_000, "gray", 8, "full"),
    (48, 80, 700_000, "rgba", 2, "fast"),
]
# One stream: (width, height, frames, quality, analysis, key interval in s).
STREAMS = [(160, 112, 8, 3, "full", 0.5)]
# --wide (the cross-check of .ci/aarch64.sh, not committed): more sizes, qualities and both analyses.
WIDE_STILLS = STILLS + [
    (640, 480, 0, "rgb", 4, "full"),
    (640, 480, 0, "rgb", 4, "fast"),
    (1, 1, 0, "rgb", 5, "full"),
    (17, 33, 100_000, "rgb", 1, "full"),
    (255, 129, 2_000_000, "rgb", 6, "fast"),
    (333, 67, 3_300_000, "gray", 3, "full"),
    (64, 64, 900_000, "rgba", 7, "full"),
    (500, 375, 5_000_000, "rgb", 2, "full"),
]
WIDE_STREAMS = STREAMS + [(320, 240, 24, 4, "full", 1.0), (200, 150, 12, 5, "fast", 2.0)]


def sha256(data) -> str:
    return hashlib.sha256(np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else data).hexdigest()


def source(width: int, height: int, timestamp_us: int, form: str = "rgb") -> np.ndarray:
    from edgecodec.testscene import TestScene
    rgb = TestScene(width, height).render(timestamp_us)
    if form == "gray":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if form == "rgba":
        alpha = (np.arange(width * height, dtype=np.uint32).reshape(height, width) * 7 % 256).astype(np.uint8)
        return np.dstack([rgb, alpha])
    return rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a[..., :3].astype(np.float64), b[..., :3].astype(np.float64)
    return round(float(10 * np.log10(255.0 ** 2 / max(np.mean((a - b) ** 2), 1e-10))), 4)


def latents(codec, packet: bytes) -> np.ndarray:
    from edgecodec import bitstream
    header, streams = bitstream.unpack(packet, expect_model_id=codec.model_id)
    return codec.decode_latents(header, streams).astype(np.int32)


def _codecs():
    from edgecodec.codec import Codec
    cache = {}

    def get(analysis):
        if analysis not in cache:
            cache[analysis] = Codec.load(threads=2, analysis=analysis)
        return cache[analysis]
    return get


def write(out: Path, wide: bool = False) -> dict:
    """Encode the cases into ``out``: still_NN.ecc, stream_NN.bin (the packets back to back), cases.json."""
    from edgecodec.temporal import StreamDecoder, StreamEncoder
    codec = _codecs()
    out.mkdir(parents=True, exist_ok=True)
    stills, streams = [], []
    for i, (w, h, t, form, q, analysis) in enumerate(WIDE_STILLS if wide else STILLS):
        image = source(w, h, t, form)
        packet = codec(analysis).encode(image, q)
        name = f"still_{i:02d}.ecc"
        (out / name).write_bytes(packet)
        decoded = codec("full").decode(packet)
        stills.append(dict(file=name, width=w, height=h, timestamp_us=t, form=form, quality=q, analysis=analysis,
                           source_sha256=sha256(image), bytes_sha256=sha256(packet),
                           latents_sha256=sha256(latents(codec("full"), packet)),
                           pixels_sha256=sha256(decoded), psnr_db=psnr(image, decoded)))
    for i, (w, h, n, q, analysis, key_s) in enumerate(WIDE_STREAMS if wide else STREAMS):
        enc, dec = StreamEncoder(codec(analysis), key_interval_s=key_s), StreamDecoder(codec("full"))
        packets, frames = [], []
        for k in range(n):
            image = source(w, h, k * STEP_US)
            packet = enc.encode(image, q, k, k * STEP_US)
            packets.append(packet)
            header, y = dec.decode_latents(packet)
            decoded = dec.codec.synthesize(header, y)
            frames.append(dict(source_sha256=sha256(image), bytes_sha256=sha256(packet), length=len(packet),
                               latents_sha256=sha256(y.astype(np.int32)), pixels_sha256=sha256(decoded),
                               psnr_db=psnr(image, decoded)))
        name = f"stream_{i:02d}.bin"
        (out / name).write_bytes(b"".join(packets))
        streams.append(dict(file=name, width=w, height=h, quality=q, analysis=analysis, key_interval_s=key_s,
                            step_us=STEP_US, keys=enc.keys, deltas=enc.deltas, frames=frames))
    cases = dict(model_id=codec("full").model_id.hex(), machine=platform.machine(),
                 python=platform.python_version(), numpy=np.__version__, stills=stills, streams=streams)
    (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    return cases


def stream_packets(folder: Path, stream: dict) -> list[bytes]:
    data, packets, at = (folder / stream["file"]).read_bytes(), [], 0
    for frame in stream["frames"]:
        packets.append(data[at:at + frame["length"]])
        at += frame["length"]
    assert at == len(data), f"{stream['file']}: {len(data) - at} bytes beyond the recorded packets"
    return packets


def check(folder: Path) -> tuple[dict, list[str]]:
    """Compare ``folder``'s cases with this machine: (counts, differences)."""
    from edgecodec.temporal import StreamDecoder, StreamEncoder
    cases = json.loads((folder / "cases.json").read_text())
    codec = _codecs()
    if codec("full").model_id.hex() != cases["model_id"]:
        return {}, [f"model id {codec('full').model_id.hex()} here, {cases['model_id']} in {folder}"]
    # Must hold: the bytes (encoder) and the decoded integer latents (decoder up to synthesis). The float
    # synthesis may round a few pixels differently on another CPU: pixels_close (PSNR within 0.05 dB) must
    # hold, pixels_equal is counted. sources_equal: TestScene's OpenCV drawing may differ by a pixel.
    bad, n = [], dict(stills=0, streams=0, frames=0, bytes_equal=0, latents_equal=0, pixels_close=0,
                      pixels_equal=0, sources_equal=0)
    required = ("bytes_equal", "latents_equal", "pixels_close")
    for s in cases["stills"]:
        image = source(s["width"], s["height"], s["timestamp_us"], s["form"])
        packet = (folder / s["file"]).read_bytes()
        mine = codec(s["analysis"]).encode(image, s["quality"])
        decoded = codec("full").decode(packet)
        results = dict(sources_equal=sha256(image) == s["source_sha256"],
                       bytes_equal=mine == packet and sha256(packet) == s["bytes_sha256"],
                       latents_equal=sha256(latents(codec("full"), packet)) == s["latents_sha256"],
                       pixels_close=abs(psnr(image, decoded) - s["psnr_db"]) < 0.05,
                       pixels_equal=sha256(decoded) == s["pixels_sha256"])
        n["stills"] += 1
        for key, ok in results.items():
            n[key] += ok
            if not ok and key in required:
                bad.append(f"{s['file']} ({s['width']}x{s['height']} {s['form']} q{s['quality']} {s['analysis']}): "
                           f"{key.replace('_', ' not ')}")
    for st in cases["streams"]:
        packets = stream_packets(folder, st)
        enc = StreamEncoder(codec(st["analysis"]), key_interval_s=st["key_interval_s"])
        dec = StreamDecoder(codec("full"))
        n["streams"] += 1
        for k, (packet, f) in enumerate(zip(packets, st["frames"])):
            image = source(st["width"], st["height"], k * st["step_us"])
            mine = enc.encode(image, st["quality"], k, k * st["step_us"])
            header, y = dec.decode_latents(packet)
            decoded = dec.codec.synthesize(header, y)
            results = dict(sources_equal=sha256(image) == f["source_sha256"],
                           bytes_equal=mine == packet and sha256(packet) == f["bytes_sha256"],
                           latents_equal=sha256(y.astype(np.int32)) == f["latents_sha256"],
                           pixels_close=abs(psnr(image, decoded) - f["psnr_db"]) < 0.05,
                           pixels_equal=sha256(decoded) == f["pixels_sha256"])
            n["frames"] += 1
            for key, ok in results.items():
                n[key] += ok
                if not ok and key in required:
                    bad.append(f"{st['file']} frame {k}: {key.replace('_', ' not ')}")
    return n, bad


# --- the tests (normal x86 suite) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden():
    path = GOLDEN / "cases.json"
    if not path.exists():
        pytest.skip(f"{path} is missing: write it with .ci/aarch64.sh --golden")
    cases = json.loads(path.read_text())
    from edgecodec.codec import Codec
    shipped = Codec.load(threads=1).model_id.hex()
    if shipped != cases["model_id"]:
        pytest.skip(f"the golden aarch64 streams were written by model {cases['model_id']}, the shipped model is "
                    f"{shipped}: re-record them with `.ci/aarch64.sh --golden`")
    return cases


def test_golden_streams_were_written_on_aarch64(golden):
    assert golden["machine"] == "aarch64"
    assert golden["stills"] and golden["streams"]
    total = sum((GOLDEN / s["file"]).stat().st_size for s in golden["stills"] + golden["streams"])
    assert total < 200_000


def test_aarch64_streams_decode_to_the_same_latents_and_reencode_to_the_same_bytes(golden):
    n, bad = check(GOLDEN)
    assert not bad, "\n".join(bad)
    assert n["stills"] == len(golden["stills"]) and n["frames"] == sum(len(s["frames"]) for s in golden["streams"])
    assert n["bytes_equal"] == n["latents_equal"] == n["pixels_close"] == n["stills"] + n["frames"]


def test_golden_stream_has_key_and_delta_frames(golden):
    from edgecodec import bitstream
    from edgecodec.bitstream import Kind
    for st in golden["streams"]:
        kinds = [bitstream.unpack(p)[0].kind for p in stream_packets(GOLDEN, st)]
        assert Kind.DELTA in kinds and kinds[0] != Kind.DELTA and kinds.count(Kind.DELTA) == st["deltas"]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("write", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[1])
    if argv[0] == "write":
        cases = write(folder, wide="--wide" in argv)
        print(f"{platform.machine()}: wrote {len(cases['stills'])} stills and "
              f"{sum(len(s['frames']) for s in cases['streams'])} stream frames "
              f"({len(cases['streams'])} streams) to {folder}")
        return 0
    n, bad = check(folder)
    print(f"{platform.machine()} checking {folder}: {json.dumps(n)}")
    for line in bad:
        print("  DIFFERS:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
