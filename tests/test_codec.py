"""The learned codec end to end, with the committed models: round trips, sizes, channels, determinism, bad input."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.codec import Codec, pad_image
from edgecodec.errors import BitstreamError, EdgecodecError, ModelError, ModelMismatchError
from edgecodec.evaluate import psnr
from edgecodec.models import ModelBundle, default_model_dir


def synthetic_photo(h=128, w=192, seed=0) -> np.ndarray:
    """A smooth scene with edges and mild noise: gradients, a disc and a bar, like a simple photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([80 + 100 * xx / w, 60 + 120 * yy / h, 140 - 60 * (xx + yy) / (h + w)], axis=2)
    disc = (yy - h * 0.5) ** 2 + (xx - w * 0.35) ** 2 < (min(h, w) * 0.25) ** 2
    img[disc] = [200, 60, 40]
    img[h // 5:h // 5 + 8, w // 2:w - 10] = [20, 20, 30]
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
    return Codec.load(threads=2)


def test_round_trip_keeps_size_and_beats_flat_gray(codec):
    img = synthetic_photo()
    out = codec.decode(codec.encode(img, codec.qualities[-1]))
    assert out.shape == img.shape and out.dtype == np.uint8
    flat = np.full_like(img, int(img.mean()))
    assert psnr(img, out) > psnr(img, flat) + 3


def test_higher_quality_spends_more_bits_for_less_error(codec):
    img = synthetic_photo()
    low, high = codec.qualities[0], codec.qualities[-1]
    p_low, p_high = codec.encode(img, low), codec.encode(img, high)
    assert len(p_high) > len(p_low)
    assert psnr(img, codec.decode(p_high)) > psnr(img, codec.decode(p_low))


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (3, 4000, 3), (65, 64, 3)])
def test_odd_sizes_round_trip_to_the_same_shape(codec, shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    packet = codec.encode(img, 2)
    header, _ = bitstream.unpack(packet)
    assert (header.height, header.width) == shape[:2]
    assert codec.decode(packet).shape == shape


def test_grayscale_input_decodes_to_grayscale(codec):
    gray = synthetic_photo()[:, :, 1]
    out = codec.decode(codec.encode(gray, 5))
    assert out.shape == gray.shape
    assert bitstream.unpack(codec.encode(gray, 5))[0].channels == 1


def test_rgba_input_keeps_colour_and_restores_opaque_alpha(codec):
    rgba = np.concatenate([synthetic_photo(), np.full((128, 192, 1), 7, np.uint8)], axis=2)
    out = codec.decode(codec.encode(rgba, 5))
    assert out.shape == rgba.shape
    assert np.all(out[:, :, 3] == 255)


def test_unknown_quality_is_refused(codec):
    with pytest.raises(EdgecodecError, match="quality"):
        codec.encode(synthetic_photo(), 99)


def test_non_uint8_image_is_refused(codec):
    with pytest.raises(EdgecodecError, match="uint8"):
        codec.encode(np.zeros((8, 8, 3), np.float32), 0)


def test_bitstream_of_another_model_is_refused_with_both_ids(codec):
    header, streams = bitstream.unpack(codec.encode(synthetic_photo(), 1))
    other = bitstream.pack(dataclasses.replace(header, model_id=b"\x01" * 8), streams)
    with pytest.raises(ModelMismatchError, match="0101010101010101"):
        codec.decode(other)


def test_corrupted_and_truncated_packets_raise_bitstream_errors(codec):
    packet = codec.encode(synthetic_photo(), 3)
    flipped = bytearray(packet)
    flipped[len(packet) // 2] ^= 0x10
    with pytest.raises(BitstreamError):
        codec.decode(bytes(flipped))
    with pytest.raises(BitstreamError):
        codec.decode(packet[:-5])


def check_forged_streams_never_crash(codec, seed):
    """Random bytes in place of each coded stream, under a valid header and CRC: an error or an image."""
    header, streams = bitstream.unpack(codec.encode(synthetic_photo(), 3))
    rng = np.random.default_rng(seed)
    for _ in range(20):
        junk = [rng.integers(0, 256, len(s), dtype=np.uint8).tobytes() for s in streams]
        try:
            out = codec.decode(bitstream.pack(header, junk))
        except EdgecodecError:
            continue
        assert out.shape == (header.height, header.width, 3)


def test_forged_streams_with_valid_crc_never_crash(codec):
    check_forged_streams_never_crash(codec, seed=5)


def test_encoded_bytes_do_not_depend_on_thread_count():
    img = synthetic_photo(192, 256, seed=3)
    one, two = Codec.load(threads=1), Codec.load(threads=2)
    for q in (0, 4, 7):
        assert one.encode(img, q) == two.encode(img, q)


def test_decoder_table_indices_and_means_equal_encoders_across_interpreter_settings():
    """Encoder (1 thread) and decoder (2 threads, a fresh bundle) derive identical CDF table indices and means."""
    img = synthetic_photo(256, 320, seed=4)
    enc = Codec.load(threads=1)
    padded = pad_image(img)
    for q in enc.qualities:
        y, z = enc.analyse(padded, q)
        enc_indices, enc_means = enc.bundle.hyper.predict(z, q)
        packet = enc.encode(img, q)
        dec = Codec(ModelBundle.load(), threads=2)
        header, streams = bitstream.unpack(packet)
        from edgecodec import entropy

        z_dec = entropy.decode(streams[0], np.broadcast_to(np.arange(z.shape[-1], dtype=np.int32), z.shape).ravel(),
                               dec.bundle.cdf_z).reshape(z.shape)
        assert np.array_equal(z_dec, z)
        dec_indices, dec_means = dec.bundle.hyper.predict(z_dec, q)
        assert np.array_equal(dec_indices, enc_indices)
        assert np.array_equal(dec_means, enc_means)


def test_committed_models_tables_equal_the_numpy_reference_on_real_latents():
    """The C requantization under TFLite kernels gives what the all-numpy reference computes."""
    codec = Codec.load()
    hyper = codec.bundle.hyper
    for q in (0, 4, codec.qualities[-1]):
        y, z = codec.analyse(pad_image(synthetic_photo(144, 208, seed=q)), q)
        expected = hyper.finish(*hyper.predict_fixed(z, q, y.shape[:2]))
        got = hyper.predict(z, q, y.shape[:2])
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


HASH_INDICES = """
import hashlib, sys, numpy as np
from edgecodec.models import ModelBundle
b = ModelBundle.load()
z = np.random.default_rng(7).integers(-40, 41, (9, 13, b.hyper.hyper_channels))
h = hashlib.sha256()
for q in b.qualities:
    for part in b.hyper.predict(z, q):
        h.update(part.tobytes())
print(h.hexdigest())
"""


def test_table_indices_and_means_identical_under_different_blas_thread_counts():
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", HASH_INDICES], env=env, capture_output=True, text=True,
                             timeout=120, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_model_folder_with_altered_file_is_refused(tmp_path):
    import shutil

    shutil.copytree(default_model_dir(), tmp_path / "m", ignore=shutil.ignore_patterns("checkpoint", "*.py"))
    data = bytearray((tmp_path / "m" / "hyper.npz").read_bytes())
    data[-10] ^= 1
    (tmp_path / "m" / "hyper.npz").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match"):
        ModelBundle.load(tmp_path / "m")


def test_malformed_manifest_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "qualities": "many"}))
    with pytest.raises(ModelError):
        ModelBundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        ModelBundle.load(tmp_path)


def test_model_id_is_the_hash_of_the_model_files_but_the_optional_decoders_and_encoders():
    bundle = ModelBundle.load()
    optional = ("decoder_live.tflite", "encoder_fast")
    fixed = {e["file"] for e in bundle.manifest.get("fixed_encoders", [])}
    assert fixed  # the shipped folder has them: they must be left out
    h = hashlib.sha256()
    for name in sorted(p.name for p in bundle.dir.iterdir()
                       if p.suffix in (".tflite", ".npz") and p.is_file() and not p.name.startswith(optional)
                       and p.name not in fixed):
        h.update(name.encode() + b"\0" + (bundle.dir / name).read_bytes())
    assert bundle.model_id == h.digest()[:8]


def test_tflite_hyper_kernels_reproduce_the_integer_convolution_exactly():
    from edgecodec.models.hyper import _conv3x3

    bundle = ModelBundle.load()
    convs = [bundle._exact_conv(name) for name in bundle.manifest["hyper_convs"]]
    rng = np.random.default_rng(11)
    for i, (conv, w) in enumerate(zip(convs, bundle.hyper.weights)):
        a = rng.integers(-127 if i == 0 else 0, 128, (23, 17, w.shape[2]))
        assert np.array_equal(np.asarray(conv(a), np.int64), _conv3x3(a, w))


def test_a_cpu_without_the_int8_kernel_writes_and_reads_the_same_bytes(monkeypatch):
    from edgecodec.models import int8

    photo = synthetic_photo(96, 160, seed=3)
    with_kernel = Codec.load(threads=1)
    monkeypatch.setattr(int8, "AVAILABLE", False)
    without = Codec.load(threads=1)
    assert not without.bundle.hyper.on_int8 and without.bundle.context._packed is None
    packet = without.encode(photo, 5)
    assert packet == with_kernel.encode(photo, 5)
    assert np.array_equal(without.decode(packet), with_kernel.decode(packet))


def test_hyper_kernel_that_disagrees_with_its_weights_is_refused():
    from edgecodec.models.hyper import HyperSynthesis

    bundle = ModelBundle.load()
    arrays = bundle._npz("hyper.npz")
    good = HyperSynthesis(arrays).convs
    off_by_one = [good[0], lambda a: np.asarray(good[1](a)) + (np.arange(a.shape[1]) == 3)[None, :, None], good[2]]
    with pytest.raises(ModelError, match="kernel 1"):
        HyperSynthesis(arrays, off_by_one)


# Ops of TFLite's builtin set that are also on the Coral Edge TPU's supported-op list
# (coral.ai/docs/edgetpu/models-intro, "Supported operations").
EDGE_TPU_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "QUANTIZE", "SPACE_TO_DEPTH", "RELU", "RELU6", "ADD", "SUB",
                "MUL", "CONCATENATION", "RESHAPE"}


def test_int8_encoders_use_only_edge_tpu_ops_with_int8_tensors():
    from edgecodec.models.interpreter import _Interpreter

    bundle = ModelBundle.load()
    for q in bundle.manifest["qualities"]:
        interp = _Interpreter(model_path=str(bundle.dir / q["encoder"]), num_threads=1)
        ops = {op["op_name"] for op in interp._get_ops_details()}
        assert ops <= EDGE_TPU_OPS, f"{q['encoder']}: {sorted(ops - EDGE_TPU_OPS)}"
        assert interp.get_input_details()[0]["dtype"] == np.uint8
        assert all(o["dtype"] == np.int8 for o in interp.get_output_details())


def _hyper_arrays_with_mean(rng, qualities=2, latent=4, hyper=3):
    """A tiny hyper-synthesis with a mean head: layer widths hyper -> 4*2 -> 4*2 -> 2*latent."""
    arrays = {}
    widths = [(hyper, 8), (2, 8), (2, 2 * latent)]
    for i, (cin, cout) in enumerate(widths):
        arrays[f"w{i}"] = rng.integers(-127, 128, (3, 3, cin, cout)).astype(np.int8)
        arrays[f"b{i}"] = rng.integers(-500, 500, cout)
        arrays[f"m{i}"] = np.full(cout if i < 2 else latent, 1 << 17, np.int64)
    arrays["index_offset"] = np.zeros((qualities, latent), np.int64)
    arrays["mean_mult"] = np.stack([np.full(latent, 1 << 14, np.int64), np.full(latent, 1 << 15, np.int64)])
    return arrays


def test_hyper_mean_head_gives_integer_means_scaled_per_quality():
    from edgecodec.models.hyper import HyperSynthesis

    hyper = HyperSynthesis(_hyper_arrays_with_mean(np.random.default_rng(5)))
    assert hyper.has_mean and hyper.latent_channels == 4
    z = np.random.default_rng(6).integers(-20, 21, (3, 2, 3))
    idx0, mean0 = hyper.predict(z, 0, (10, 7))
    idx1, mean1 = hyper.predict(z, 1, (10, 7))
    assert idx0.shape == mean0.shape == (10, 7, 4) and mean0.dtype == np.int32
    assert np.array_equal(idx0, idx1)  # equal index offsets
    assert np.abs(mean1).max() > np.abs(mean0).max() > 0  # quality 1's multiplier is twice quality 0's
    assert np.abs(mean1).max() <= 127


def test_hyper_mean_multipliers_of_the_wrong_shape_are_refused():
    from edgecodec.models.hyper import HyperSynthesis

    arrays = _hyper_arrays_with_mean(np.random.default_rng(5))
    arrays["mean_mult"] = arrays["mean_mult"][:, :3]
    with pytest.raises(ModelError, match="mean multipliers"):
        HyperSynthesis(arrays)
    arrays.pop("mean_mult")
    with pytest.raises(ModelError, match="shapes are inconsistent"):
        HyperSynthesis(arrays)  # a last layer twice as wide as its index channels needs a mean head


def test_decoded_pixels_are_the_synthesis_output_rounded_half_to_even_and_saturated(codec):
    img = synthetic_photo(80, 112, seed=5)
    packet = codec.encode(img, 3)
    header, streams = bitstream.unpack(packet)
    y_hat = codec.decode_latents(header, streams).astype(np.float32) * codec.bundle.gains[1][3]
    (x,) = codec.bundle.decoder(codec.decoder_kind, codec.threads).run(y_hat[None])
    expected = np.clip(np.round(x[0, :80, :112]), 0, 255).astype(np.uint8)
    assert np.array_equal(codec.decode(packet), expected)


def test_importing_the_model_contract_loads_no_c_extension():
    import subprocess
    import sys

    code = ("import sys, edgecodec.models.contract; "
            "print(sorted(m for m in sys.modules if m.endswith(('_fixedpoint', '_rangecoder', '.hyper'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
