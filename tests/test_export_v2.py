"""Model v2's export: the TFLite and integer models it writes compute what the PyTorch model computes.

Needs both training extras (PyTorch and CompressAI, TensorFlow); skipped without them, as in CI. A small
seeded v2 model is exported from scratch and the folder is run through the runtime (``edgecodec``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before TensorFlow: the other order crashes (tools/export_v2.py)
pytest.importorskip("compressai")
pytest.importorskip("tensorflow")

import cv2  # noqa: E402

from tools import export_v2, torch_codec  # noqa: E402
from tools.train_torch import state_arrays  # noqa: E402

from edgecodec.codec import Codec, pad_image  # noqa: E402
from edgecodec.models import ModelBundle  # noqa: E402
from edgecodec.testscene import TestScene  # noqa: E402

CFG = torch_codec.Config(n_enc=(8, 12, 16), latent=24, hyper=8, hyper_latent=8, n_dec=(16, 12, 8))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v2")
    torch.manual_seed(5)
    model = torch_codec.Codec(CFG)
    with torch.no_grad():  # no symmetry left from the initialisation (GDN's gamma, zero context)
        for name, p in model.named_parameters():
            if not name.startswith("entropy_z"):
                p.add_(torch.randn_like(p) * (0.02 if name.startswith("ctx") else 0.3 if name.startswith("h_")
                                              else 0.05))
    np.savez(tmp / "w.npz", **state_arrays(model))
    (tmp / "w.json").write_text(json.dumps({"step": 3, "config": CFG.to_dict()}))
    calib = tmp / "calib"
    calib.mkdir()
    scene = TestScene(320, 256)
    for i in range(3):
        cv2.imwrite(str(calib / f"{i}.png"), cv2.cvtColor(scene.render(7 * i), cv2.COLOR_RGB2BGR))
    export_v2.export(tmp / "w.npz", [calib], tmp / "model")
    return model.eval(), tmp / "model"


def image():
    return TestScene(128, 96).render(3)


def torch_analyse(model, rgb):
    x = torch.from_numpy(pad_image(rgb)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        y, features = model.analyse(x)
        z = model.h_a(features)
    return y[0].permute(1, 2, 0).numpy(), z[0].permute(1, 2, 0).numpy()


def test_the_float_encoder_computes_the_pytorch_analysis(exported):
    model, folder = exported
    y_ref, z_ref = torch_analyse(model, image())
    outs = ModelBundle.load(folder).encoder(0, 1, "float").run(pad_image(image())[None].astype(np.float32))
    y, z = sorted(outs, key=lambda a: -a.shape[1])
    assert np.abs(y[0] - y_ref).max() <= 1e-3 * max(1.0, np.abs(y_ref).max())
    assert np.abs(z[0] - z_ref).max() <= 1e-3 * max(1.0, np.abs(z_ref).max())


def test_the_int8_encoder_writes_the_pytorch_models_rounded_latents(exported):
    model, folder = exported
    y_ref, _ = torch_analyse(model, image())
    codec = Codec.load(folder, threads=1)
    for q in (0, 4, 8):
        y, _ = codec.analyse(pad_image(image()), q)
        expected = np.round(y_ref * np.exp(model.log_gain[q].detach().numpy()))
        assert np.mean(np.abs(y - expected) <= 1) >= 0.99  # int8 activations: off by one at most, rarely


def test_the_decoder_computes_the_pytorch_synthesis(exported):
    model, folder = exported
    rng = np.random.default_rng(0)
    y_hat = rng.normal(0, 2, (6, 8, CFG.latent)).astype(np.float32)
    (out,) = ModelBundle.load(folder).decoder("full", 1).run(y_hat[None])
    with torch.no_grad():
        ref = model.g_s(torch.from_numpy(y_hat).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(out[0] - ref * 255.0).max() < 0.05


def test_the_integer_entropy_model_follows_the_pytorch_scales_and_means(exported):
    model, folder = exported
    codec = Codec.load(folder, threads=1)
    q = 4
    y, z = codec.analyse(pad_image(image()), q)
    gain = np.exp(model.log_gain[q].detach().numpy())
    with torch.no_grad():
        log_scale, mean = model.entropy_parameters(torch.from_numpy(z.astype(np.float32)).permute(2, 0, 1)[None])
    log_scale = log_scale[0].permute(1, 2, 0).numpy()[:y.shape[0], :y.shape[1]]
    mean = mean[0].permute(1, 2, 0).numpy()[:y.shape[0], :y.shape[1]] * gain
    coder = codec.entropy_model.frame(z, y.shape, q)
    rows = coder.passes[0]
    index, int_mean = coder.tables(0, y, rows)
    from edgecodec.models import contract
    level = np.clip(np.round((log_scale + np.log(gain) - np.log(contract.SCALE_MIN)) / contract.log_scale_step()),
                    0, contract.SCALE_LEVELS - 1).reshape(-1, CFG.latent)[rows]
    assert level.std() > 2 and np.abs(mean).max() > 3  # tables and means that vary, so that a mix-up shows
    # int8 weights and activations: a level or a unit apart often, never far
    level_error = np.abs(index // (contract.MEAN_STEPS + 1) - level)
    mean_error = np.abs(int_mean - np.round(mean.reshape(-1, CFG.latent)[rows]))
    assert np.mean(level_error <= 1) >= 0.9 and level_error.max() <= 3
    assert np.mean(mean_error <= 1) >= 0.9 and mean_error.max() <= 3


def test_an_exported_v2_folder_round_trips_through_the_runtime(exported):
    _, folder = exported
    codec = Codec.load(folder, threads=1)
    for q in (0, 8):
        packet = codec.encode(image(), q)
        assert codec.decode(packet).shape == image().shape
    assert ModelBundle.load(folder).manifest["config"]["version"] == 2
