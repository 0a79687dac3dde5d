"""Streams encoded on aarch64 (Debian bookworm arm64 under qemu, `.ci/aarch64.sh`) decode here to the
same integer latents and the same pixels, and this machine's encoder writes the same bytes from the
same source images.

The golden sources are `edgecodec.testscene.TestScene` frames (and a gray and an RGBA variant), generated
on aarch64 when the set is recorded and kept beside it (sources.npz), since TestScene draws with OpenCV,
whose drawing and resizing differ between versions and CPUs. tests/data/aarch64/cases.json holds, per still and
per stream packet, the SHA-256 of the source pixels, of the encoded bytes, of the decoded integer latents
and of the decoded pixels, and the PSNR, as aarch64 produced them, and the model id they were written
with: a different shipped model writes other bytes, so the tests skip then.

The same file is the tool `.ci/aarch64.sh` runs on both machines for the wide cross-check. TestScene
draws with OpenCV, whose resize and anti-aliased drawing differ by a pixel between ARM and x86, so the
wide check's sources are generated once (on x86) and read as .npy files by both machines:
    python tests/test_aarch64_golden.py sources DIR           write the wide set's source pixels to DIR
    python tests/test_aarch64_golden.py write DIR [--wide] [--sources SRC]
                                    encode the cases into DIR (+ cases.json, + the decoded pixels as .npy
                                    with --sources); without --sources the sources are generated here
    python tests/test_aarch64_golden.py check DIR [--mine MINE] [--json OUT]
                                    decode DIR's packets here and compare latents and pixels with DIR's;
                                    compare the bytes with MINE's packets (this machine's `write` of the
                                    same sources), or without --mine re-encode DIR's sources here; exit 1
                                    if bytes, latents or PSNR (0.05 dB) differ
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "aarch64"
STEP_US = 100_000  # stream frames at 10 frames/s
SOURCES_NPZ = "sources.npz"  # a golden set's source pixels, recorded with it

# (width, height, render timestamp in us, form, quality, analysis): the committed golden stills.
STILLS = [
    (320, 240, 1_500_000, "rgb", 4, "full"),
    (97, 61, 250_000, "rgb", 0, "full"),
    (130, 47, 4_000_000, "gray", 8, "full"),
    (48, 80, 700_000, "rgba", 2, "fast"),
]
# One stream: (width, height, frames, quality, analysis, key interval in s).
STREAMS = [(160, 112, 8, 3, "full", 0.5)]
# --wide (the cross-check of .ci/aarch64.sh, not committed): more sizes, odd sizes, qualities 0 - 8 and
# both analyses; three streams of key and delta frames, one of odd size.
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
WIDE_STREAMS = STREAMS + [(320, 240, 16, 4, "full", 1.0), (203, 151, 12, 5, "fast", 0.6)]


def sha256(data) -> str:
    return hashlib.sha256(np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else data).hexdigest()


def source(width: int, height: int, timestamp_us: int, form: str = "rgb") -> np.ndarray:
    import cv2
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


class Sources:
    """The source pixels of each case: generated here (TestScene), or read from a `sources` folder (one
    .npy file a case) or a golden set's sources.npz (the same names as its keys)."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        archive = folder / SOURCES_NPZ if folder is not None else None
        self.archive = dict(np.load(archive)) if archive is not None and archive.exists() else None

    def _load(self, name: str) -> np.ndarray:
        return self.archive[name] if self.archive is not None else np.load(self.folder / f"{name}.npy")

    def still(self, i: int, s: tuple) -> np.ndarray:
        if self.folder is None:
            w, h, t, form = s[:4]
            return source(w, h, t, form)
        return self._load(f"still_{i:02d}")

    def frames(self, i: int, st: tuple):
        if self.folder is None:
            w, h, n = st[:3]
            return (source(w, h, k * STEP_US) for k in range(n))
        return iter(self._load(f"stream_{i:02d}"))


def write_sources(out: Path) -> None:
    """The wide set's source pixels, generated on this machine, as .npy files for both machines to read."""
    out.mkdir(parents=True, exist_ok=True)
    gen = Sources()
    for i, s in enumerate(WIDE_STILLS):
        np.save(out / f"still_{i:02d}.npy", gen.still(i, s))
    for i, st in enumerate(WIDE_STREAMS):
        np.save(out / f"stream_{i:02d}.npy", np.stack(list(gen.frames(i, st))))
    (out / "sources.json").write_text(json.dumps(dict(machine=platform.machine(), stills=WIDE_STILLS,
                                                      streams=WIDE_STREAMS)) + "\n")


def write(out: Path, wide: bool = False, sources: Path | None = None) -> dict:
    """Encode the cases into ``out``: still_NN.ecc, stream_NN.bin (the packets back to back), cases.json;
    with ``sources`` also the decoded pixels (still_NN.pixels.npy, stream_NN.pixels.npy), without them
    the sources generated here (sources.npz)."""
    from edgecodec.temporal import StreamDecoder, StreamEncoder
    codec = _codecs()
    src = Sources(sources)
    wide = wide or sources is not None
    out.mkdir(parents=True, exist_ok=True)
    stills, streams, generated = [], [], {}
    for i, s in enumerate(WIDE_STILLS if wide else STILLS):
        w, h, t, form, q, analysis = s
        image = generated[f"still_{i:02d}"] = src.still(i, s)
        packet = codec(analysis).encode(image, q)
        name = f"still_{i:02d}.ecc"
        (out / name).write_bytes(packet)
        decoded = codec("full").decode(packet)
        if sources is not None:
            np.save(out / f"still_{i:02d}.pixels.npy", decoded)
        stills.append(dict(file=name, width=w, height=h, timestamp_us=t, form=form, quality=q, analysis=analysis,
                           source_sha256=sha256(image), bytes_sha256=sha256(packet),
                           latents_sha256=sha256(latents(codec("full"), packet)),
                           pixels_sha256=sha256(decoded), psnr_db=psnr(image, decoded)))
    for i, st in enumerate(WIDE_STREAMS if wide else STREAMS):
        w, h, n, q, analysis, key_s = st
        enc, dec = StreamEncoder(codec(analysis), key_interval_s=key_s), StreamDecoder(codec("full"))
        packets, frames, pixels = [], [], []
        generated[f"stream_{i:02d}"] = np.stack(list(src.frames(i, st)))
        for k, image in enumerate(generated[f"stream_{i:02d}"]):
            packet = enc.encode(image, q, k, k * STEP_US)
            packets.append(packet)
            header, y = dec.decode_latents(packet)
            decoded = dec.codec.synthesize(header, y)
            pixels.append(decoded)
            frames.append(dict(source_sha256=sha256(image), bytes_sha256=sha256(packet), length=len(packet),
                               kind=header.kind.name, latents_sha256=sha256(y.astype(np.int32)),
                               pixels_sha256=sha256(decoded), psnr_db=psnr(image, decoded)))
        name = f"stream_{i:02d}.bin"
        (out / name).write_bytes(b"".join(packets))
        if sources is not None:
            np.save(out / f"stream_{i:02d}.pixels.npy", np.stack(pixels))
        streams.append(dict(file=name, width=w, height=h, quality=q, analysis=analysis, key_interval_s=key_s,
                            step_us=STEP_US, keys=enc.keys, deltas=enc.deltas, frames=frames))
    cases = dict(model_id=codec("full").model_id.hex(), machine=platform.machine(),
                 python=platform.python_version(), numpy=np.__version__, stills=stills, streams=streams)
    if sources is not None:
        cases["sources"] = str(sources.resolve())
    else:
        np.savez_compressed(out / SOURCES_NPZ, **generated)
    (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    return cases


def stream_packets(folder: Path, stream: dict) -> list[bytes]:
    data, packets, at = (folder / stream["file"]).read_bytes(), [], 0
    for frame in stream["frames"]:
        packets.append(data[at:at + frame["length"]])
        at += frame["length"]
    assert at == len(data), f"{stream['file']}: {len(data) - at} bytes beyond the recorded packets"
    return packets


def _where_bytes_differ(mine_latents: np.ndarray | None, theirs: np.ndarray) -> str:
    """Which stage made different bytes: the analysis (other latents) or the coding (same latents)."""
    if mine_latents is None:
        return "this machine's packet does not decode"
    if mine_latents.shape != theirs.shape:
        return f"latent shapes {mine_latents.shape} and {theirs.shape}"
    d = int(np.count_nonzero(mine_latents != theirs))
    if d:
        return f"the analysis: {d} of {theirs.size} latents differ (max |d| {int(np.abs(mine_latents - theirs).max())})"
    return "the hyper-analysis or the coding: the latents y are equal, the bytes not (compare z: unpack_latents)"


def check(folder: Path, mine: Path | None = None) -> tuple[dict, list[str], list[dict]]:
    """Compare ``folder``'s cases with this machine: (counts, differences that must not be, per-case rows).

    Bytes: this machine's packets (``mine``, written by `write` from the same sources; or re-encoded here)
    against ``folder``'s. Latents and pixels: ``folder``'s packets decoded here against what ``folder``'s
    machine decoded (hashes; and the pixel arrays, when ``folder`` has them, for the max abs difference)."""
    from edgecodec.temporal import StreamDecoder, StreamEncoder
    cases = json.loads((folder / "cases.json").read_text())
    codec = _codecs()
    if codec("full").model_id.hex() != cases["model_id"]:
        return {}, [f"model id {codec('full').model_id.hex()} here, {cases['model_id']} in {folder}"], []
    src = Sources(folder) if (folder / SOURCES_NPZ).exists() else Sources()
    if "sources" in cases:  # the wide check: the sources folder sits beside ``folder``
        src = Sources(folder.parent / Path(cases["sources"]).name)
    ours = json.loads((mine / "cases.json").read_text()) if mine else None
    # Must hold: the bytes (the int8 analysis, edgecodec.models.analysis), the decoded integer latents
    # (decoder up to synthesis) and the decoded pixels (the fixed-order float synthesis,
    # edgecodec.models.synthesis), with the PSNR and, where pixels differ, the max abs difference reported.
    # sources_equal is counted only: TestScene sources generated on two machines may differ by a pixel.
    bad, rows = [], []
    n = dict(stills=0, streams=0, frames=0, bytes_equal=0, latents_equal=0, pixels_close=0, pixels_equal=0,
             sources_equal=0)
    required = ("bytes_equal", "latents_equal", "pixels_equal", "pixels_close")

    def compare(label, image, packet, my_packet, my_latents, case, y, decoded, theirs_pixels):
        r = dict(case=label, sources_equal=sha256(image) == case["source_sha256"],
                 bytes_equal=my_packet == packet and sha256(packet) == case["bytes_sha256"],
                 latents_equal=sha256(y.astype(np.int32)) == case["latents_sha256"],
                 pixels_equal=sha256(decoded) == case["pixels_sha256"])
        here = psnr(image, decoded)
        r["psnr_here"], r["psnr_there"] = here, case["psnr_db"]
        r["pixels_close"] = abs(here - case["psnr_db"]) < 0.05
        if theirs_pixels is not None:
            d = np.abs(decoded.astype(np.int16) - theirs_pixels.astype(np.int16))
            r["max_abs_diff"], r["pixels_differing"] = int(d.max()), int(np.count_nonzero(d))
            r["psnr_between"] = psnr(decoded, theirs_pixels) if d.any() else None
        if not r["bytes_equal"]:
            r["bytes_stage"] = _where_bytes_differ(my_latents, y.astype(np.int32))
        for key in n:
            if key in r:
                n[key] += r[key]
                if not r[key] and key in required:
                    bad.append(f"{label}: {key.replace('_', ' not ')}"
                               + (f" ({r['bytes_stage']})" if key == "bytes_equal" else ""))
        rows.append(r)

    for i, s in enumerate(cases["stills"]):
        case = (s["width"], s["height"], s["timestamp_us"], s["form"])
        image = src.still(i, case)
        packet = (folder / s["file"]).read_bytes()
        my_packet = (mine / s["file"]).read_bytes() if mine else codec(s["analysis"]).encode(image, s["quality"])
        try:
            my_latents = latents(codec("full"), my_packet)
        except Exception:
            my_latents = None
        y = latents(codec("full"), packet)
        decoded = codec("full").decode(packet)
        pix = folder / f"still_{i:02d}.pixels.npy"
        n["stills"] += 1
        compare(f"{s['file']} ({s['width']}x{s['height']} {s['form']} q{s['quality']} {s['analysis']})",
                image, packet, my_packet, my_latents, s, y, decoded, np.load(pix) if pix.exists() else None)
    for i, st in enumerate(cases["streams"]):
        packets = stream_packets(folder, st)
        my_packets = stream_packets(mine, ours["streams"][i]) if mine else None
        enc = StreamEncoder(codec(st["analysis"]), key_interval_s=st["key_interval_s"])
        dec, my_dec = StreamDecoder(codec("full")), StreamDecoder(codec("full"))
        pix = folder / f"stream_{i:02d}.pixels.npy"
        theirs = np.load(pix) if pix.exists() else None
        n["streams"] += 1
        frames = src.frames(i, (st["width"], st["height"], len(st["frames"])))
        for k, (packet, f, image) in enumerate(zip(packets, st["frames"], frames)):
            my_packet = my_packets[k] if mine else enc.encode(image, st["quality"], k, k * st["step_us"])
            header, y = dec.decode_latents(packet)
            decoded = dec.codec.synthesize(header, y)
            try:
                my_latents = my_dec.decode_latents(my_packet)[1].astype(np.int32)
            except Exception:
                my_latents, my_dec = None, StreamDecoder(codec("full"))
            n["frames"] += 1
            compare(f"{st['file']} ({st['width']}x{st['height']} q{st['quality']} {st['analysis']}) frame {k} "
                    f"{header.kind.name.lower()}", image, packet, my_packet, my_latents, f, y, decoded,
                    None if theirs is None else theirs[k])
    return n, bad, rows


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
    assert total < 200_000 and (GOLDEN / SOURCES_NPZ).stat().st_size < 2_000_000


def test_aarch64_streams_decode_to_the_same_latents_and_pixels_and_reencode_to_the_same_bytes(golden):
    n, bad, _ = check(GOLDEN)
    assert not bad, "\n".join(bad)
    assert n["stills"] == len(golden["stills"]) and n["frames"] == sum(len(s["frames"]) for s in golden["streams"])
    assert n["bytes_equal"] == n["latents_equal"] == n["pixels_equal"] == n["stills"] + n["frames"]


def test_golden_stream_has_key_and_delta_frames(golden):
    from edgecodec import bitstream
    from edgecodec.bitstream import Kind
    for st in golden["streams"]:
        kinds = [bitstream.unpack(p)[0].kind for p in stream_packets(GOLDEN, st)]
        assert Kind.DELTA in kinds and kinds[0] != Kind.DELTA and kinds.count(Kind.DELTA) == st["deltas"]


def _option(argv: list[str], name: str) -> Path | None:
    return Path(argv[argv.index(name) + 1]) if name in argv else None


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("sources", "write", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[1])
    if argv[0] == "sources":
        write_sources(folder)
        print(f"{platform.machine()}: wrote the sources of {len(WIDE_STILLS)} stills and "
              f"{sum(st[2] for st in WIDE_STREAMS)} stream frames ({len(WIDE_STREAMS)} streams) to {folder}")
        return 0
    if argv[0] == "write":
        cases = write(folder, wide="--wide" in argv, sources=_option(argv, "--sources"))
        print(f"{platform.machine()}: wrote {len(cases['stills'])} stills and "
              f"{sum(len(s['frames']) for s in cases['streams'])} stream frames "
              f"({len(cases['streams'])} streams) to {folder}")
        return 0
    n, bad, rows = check(folder, mine=_option(argv, "--mine"))
    print(f"{platform.machine()} checking {folder}: {json.dumps(n)}")
    for r in rows:
        if not r["pixels_equal"] and "max_abs_diff" in r:
            print(f"  pixels differ: {r['case']}: {r['pixels_differing']} values, max |d| {r['max_abs_diff']}, "
                  f"PSNR {r['psnr_here']} here / {r['psnr_there']} there, {r['psnr_between']} dB between")
    for line in bad:
        print("  DIFFERS:", line)
    out = _option(argv, "--json")
    if out:
        out.write_text(json.dumps(dict(machine=platform.machine(), folder=str(folder), counts=n, required_failures=bad,
                                       cases=rows), indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
