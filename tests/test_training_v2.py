"""Model v2's training side: the packed crop set that travels to a GPU machine, the GPU round's split and
collect, and (where PyTorch and CompressAI are installed, the ``train`` extra) the PyTorch model's
padding, budgets and reproducible start."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tools import gpu_round
from tools.train_data import load_pack, pack_crops


def photos(n=3, size=(300, 400)):
    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, size[1], dtype=np.float32)[None, :, None]
    return [np.clip(base + rng.normal(0, 20, size + (3,)), 0, 255).astype(np.uint8) for _ in range(n)]


def test_pack_stays_within_its_budget_and_loads_back_as_crops(tmp_path):
    path = tmp_path / "pack.npz"
    n = pack_crops(photos(), path, 200_000, 96, np.random.default_rng(0))
    assert n > 3
    assert path.stat().st_size <= 200_000
    crops = load_pack(path)
    assert crops.shape == (n, 96, 96, 3) and crops.dtype == np.uint8
    assert crops.std() > 5  # real image content, not blank crops


def test_a_damaged_pack_is_refused_with_its_crop_named(tmp_path):
    path = tmp_path / "pack.npz"
    pack_crops(photos(1), path, 50_000, 64, np.random.default_rng(0))
    with np.load(path) as data:
        arrays = dict(data)
    arrays["jpeg"] = np.zeros_like(arrays["jpeg"])
    np.savez(path, **arrays)
    with pytest.raises(SystemExit, match="crop 0 does not decode"):
        load_pack(path)


def test_gpu_round_parts_are_small_enough_and_collect_back_into_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_round, "PART", 1000)
    ckpt = np.random.default_rng(0).bytes(2500)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "ckpt.pt").write_bytes(ckpt)
    names = gpu_round.split_into(tmp_path / "ckpt.pt", out)
    assert names == ["ckpt.pt.part0", "ckpt.pt.part1", "ckpt.pt.part2"]
    assert all((out / n).stat().st_size <= 1000 for n in names)
    (out / "weights.json").write_text(json.dumps({"step": 7}))
    names.append("weights.json")
    import hashlib
    (out / "parts.json").write_text(json.dumps({n: hashlib.sha256((out / n).read_bytes()).hexdigest()
                                                for n in names}))
    gpu_round.main(["collect", str(out), "--run", str(tmp_path / "run")])
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == ckpt
    assert json.loads((tmp_path / "run" / "weights.json").read_text())["step"] == 7


def test_collect_refuses_a_part_that_does_not_match_its_hash(tmp_path):
    (tmp_path / "ckpt.pt.part0").write_bytes(b"changed")
    (tmp_path / "parts.json").write_text(json.dumps({"ckpt.pt.part0": "0" * 64}))
    with pytest.raises(SystemExit, match="does not match its SHA-256"):
        gpu_round.main(["collect", str(tmp_path), "--run", str(tmp_path / "run")])


# ------------------------------------------------------------------ the PyTorch model (train extra)

def torch_parts():
    pytest.importorskip("torch")
    pytest.importorskip("compressai")
    import torch
    from tools import torch_codec
    return torch, torch_codec


def test_same_padding_puts_the_odd_pixel_after_the_image_as_tensorflow_does():
    torch, tc = torch_parts()
    conv = tc.SameConv2d(1, 1, 3, 2)
    torch.nn.init.zeros_(conv.bias)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # output = the input at the window's top-left tap
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = conv(x)
    # TF "same", stride 2, kernel 3 on 4 pixels: no padding before, one after, so the top-left tap of
    # output (0, 0) is input (0, 0) (a symmetric pad of 1 would make it the zero padding).
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


def test_v2_fits_the_edge_and_desktop_budgets():
    _, tc = torch_parts()
    macs = tc.macs(tc.Config())
    assert macs["edge_encoder"] <= 1.6
    assert macs["synthesis"] <= 15.0
    v1 = tc.Config(n_enc=(48, 48, 64), latent=128, n_dec=(64, 64, 32), dec_res=(0, 0, 0))
    assert round(tc.macs(v1)["edge_encoder"], 2) == 1.08  # the figure for today's model
    assert round(tc.macs(v1)["synthesis"], 2) == 2.92


def test_training_step_is_finite_and_a_new_model_is_the_same_from_the_same_seed():
    torch, tc = torch_parts()
    torch.manual_seed(3)
    a = tc.Codec(tc.Config(n_enc=(8, 8, 8), latent=16, hyper=8, hyper_latent=8, n_dec=(8, 8, 8)))
    torch.manual_seed(3)
    b = tc.Codec(tc.Config(n_enc=(8, 8, 8), latent=16, hyper=8, hyper_latent=8, n_dec=(8, 8, 8)))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    x = torch.rand(2, 3, 64, 64)
    loss, bpp, mse = tc.rd_loss(a, x, torch.tensor([0, 8]), torch.tensor(a.cfg.lambdas))
    loss.backward()
    assert torch.isfinite(loss) and (bpp > 0).all() and (mse > 0).all()
    assert all(torch.isfinite(p.grad).all() for p in a.parameters() if p.grad is not None)


def test_the_shipped_models_multiply_accumulates_are_the_figures_the_budgets_start_from():
    from edgecodec.models import ModelBundle, contract

    from tools.bench_codec import model_gmacs

    manifest = ModelBundle.load().manifest
    assert round(contract.gmacs(manifest["config"])["edge_encoder"], 2) == 1.08
    assert model_gmacs(manifest, "full", "full")["decoder"] == pytest.approx(2.92, abs=0.005)
    assert model_gmacs(manifest, "fast", "live") == {"encoder": pytest.approx(0.41, abs=0.01),
                                                     "entropy_model": pytest.approx(0.31, abs=0.01),
                                                     "decoder": pytest.approx(0.44, abs=0.01)}
