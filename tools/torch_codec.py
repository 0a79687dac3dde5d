"""Model v2's networks and rate model in PyTorch: the training side, on CPU here and on CUDA where lent.

The shape follows v1 (``codec_model.py``, TensorFlow), with the capacity split the deployments ask for:

* ``g_a`` analysis, int8 on the edge: conv5x5/2 -> ReLU -> three conv3x3/2 (ReLU between) to ``latent``
  channels at 1/16. Conv and ReLU only, so TFLite's int8 path and the Edge TPU run all of it. With the
  hyper-analysis it is 1.47 GMAC per 640x480 frame as exported (``macs``), under the 1.6 GMAC budget.
* ``h_a`` hyper-analysis, in the same int8 model, reads the analysis' last hidden features at 1/8.
* ``h_s`` hyper-synthesis: two (conv3x3 -> depth-to-space -> ReLU) upsamplings, then one conv3x3 whose
  2 x ``latent`` outputs are the latents' log-scales and means (Minnen et al. 2018). The runtime evaluates
  it in integers (``edgecodec.models.hyper``), so encoder and decoder pick the same tables on any CPU.
* ``ctx`` checkerboard context (He et al. 2021): a 3x3 convolution whose only non-zero taps are the four
  anchor neighbours (up, left, right, down), correcting non-anchor log-scales and means.
* ``g_s`` synthesis, float on the desktop, where it may cost up to 15 GMAC a frame: sub-pixel
  upsamplings (conv3x3 -> depth-to-space) with inverse GDN (Balle et al. 2016; CompressAI's layer) and a
  residual block after the first two.
* Variable rate from one model through gain units (Cui et al. 2021), as in v1.

Entropy models are CompressAI's: ``EntropyBottleneck`` for the hyper-latents (the export discretizes it
into one CDF per channel over the integers the int8 model can emit) and ``GaussianConditional`` for the
latents, with the scale floor the runtime's tables start at (``SCALE_MIN``).

Convolutions pad as TensorFlow's ``"same"`` does (more padding after than before on stride 2), so the
trained weights mean the same in the TFLite export.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from torch import nn

from edgecodec.models import contract  # noqa: E402

# Nine lambdas log-spaced (ratio about 2.34) from 0.00028 to 0.25: v1's range widened at both ends, for
# about 0.1 bpp at quality 0 and above 36 dB at quality 8 on Kodak once the transforms have the capacity.
LAMBDAS = tuple(round(0.00028 * (0.25 / 0.00028) ** (i / 8), 6) for i in range(9))
SCALE_MIN = contract.SCALE_MIN  # the smallest table the coder has
Z_CLIP = 127.0  # hyper-latents are int8 symbols
# Latents leave the int8 network through an exact integer last layer (not an int8 tensor), so they are not
# held to +-127; this bound only keeps them within int16 and the coder's escape range.
Y_CLIP = 4095.0
# The checkerboard context reads the anchors clipped to int8, so that the runtime's exact int8 products
# (edgecodec.models.int8: magnitudes up to 128) can compute it whatever the latents' range.
CTX_CLIP = 127.0
CROSS_TAPS = contract.CONTEXT_TAPS  # the 3x3 taps of a non-anchor's four anchor neighbours, in export order


@dataclasses.dataclass(frozen=True)
class Config:
    n_enc: tuple = (48, 64, 96)
    latent: int = 192
    hyper: int = 64
    hyper_latent: int = 64
    n_dec: tuple = (128, 96, 64)
    dec_res: tuple = (1, 1, 0)  # residual blocks after each of the first three synthesis stages
    lambdas: tuple = LAMBDAS

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class SameConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow's ``padding="same"``: output ceil(n / stride), the odd pixel of padding
    after the image, not before."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__(cin, cout, k, stride, padding=0)

    def forward(self, x):
        pads = []
        for n, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                        (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ResBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))): more synthesis capacity at a resolution, no change of shape."""

    def __init__(self, ch):
        super().__init__()
        self.conv1 = SameConv2d(ch, ch, 3)
        self.conv2 = SameConv2d(ch, ch, 3)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class CrossContext(nn.Conv2d):
    """Checkerboard context: a 3x3 convolution from ungained anchor latents to (log-scale, mean)
    corrections, with only the four cross taps free. Zero at start."""

    def __init__(self, latent):
        super().__init__(latent, 2 * latent, 3, padding=1)
        mask = torch.zeros(1, 1, 3, 3)
        for r, c in CROSS_TAPS:
            mask[..., r, c] = 1.0
        self.register_buffer("mask", mask, persistent=False)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)


def round_ste(x):
    return x + (torch.round(x) - x).detach()


def anchor_mask(height, width, device):
    """1.0 at anchors ((row + column) even), coded first; shape (1, 1, H, W)."""
    i = torch.arange(height, device=device)[:, None] + torch.arange(width, device=device)[None, :]
    return (i % 2 == 0).float()[None, None]


class Codec(nn.Module):
    """All trainable parts of model v2, with the training forward pass."""

    def __init__(self, cfg: Config = Config()):
        super().__init__()
        self.cfg = cfg
        n1, n2, n3 = cfg.n_enc
        relu = nn.ReLU
        self.g_a = nn.Sequential(SameConv2d(3, n1, 5, 2), relu(), SameConv2d(n1, n2, 3, 2), relu(),
                                 SameConv2d(n2, n3, 3, 2), relu())
        self.g_a_out = SameConv2d(n3, cfg.latent, 3, 2)
        self.h_a = nn.Sequential(SameConv2d(n3, cfg.hyper, 3, 2), relu(), SameConv2d(cfg.hyper, cfg.hyper, 3, 2),
                                 relu(), SameConv2d(cfg.hyper, cfg.hyper_latent, 3, 2))
        h = cfg.hyper
        self.h_s = nn.Sequential(SameConv2d(cfg.hyper_latent, 4 * h, 3), nn.PixelShuffle(2), relu(),
                                 SameConv2d(h, 4 * h, 3), nn.PixelShuffle(2), relu(),
                                 SameConv2d(h, 2 * cfg.latent, 3))
        self.ctx = CrossContext(cfg.latent)
        stages, cin = [], cfg.latent
        for width, res in zip(cfg.n_dec, cfg.dec_res):
            stages += [SameConv2d(cin, 4 * width, 3), nn.PixelShuffle(2), GDN(width, inverse=True)]
            stages += [ResBlock(width) for _ in range(res)]
            cin = width
        stages += [SameConv2d(cin, 12, 3), nn.PixelShuffle(2)]
        self.g_s = nn.Sequential(*stages)
        mid = math.exp(sum(math.log(v) for v in cfg.lambdas) / len(cfg.lambdas))
        init = torch.tensor([[0.5 * math.log(v / mid)] * cfg.latent for v in cfg.lambdas])
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init)
        self.entropy_z = EntropyBottleneck(cfg.hyper_latent)
        self.gaussian = GaussianConditional(None, scale_bound=SCALE_MIN)

    def analyse(self, x):
        """(y, the analysis' last hidden features) for x in [0, 1], NCHW."""
        features = self.g_a(x)
        return self.g_a_out(features), features

    def entropy_parameters(self, z_hat):
        """Ungained (log-scale, mean) of every latent from the rounded hyper-latents, before the context."""
        out = self.h_s(z_hat)
        return out[:, :self.cfg.latent], out[:, self.cfg.latent:]

    def forward(self, x, quality):
        """(x_hat, bits of y, bits of z) per image; quality is a long tensor (batch,). Training noise
        stands in for rounding in the rate, straight-through rounding in what the decoder sees."""
        gain = torch.exp(self.log_gain[quality])[:, :, None, None]
        inv_gain = torch.exp(self.log_inv_gain[quality])[:, :, None, None]
        y, features = self.analyse(x)
        z = self.h_a(features)
        _, z_likelihood = self.entropy_z(z, training=self.training)
        z_hat = torch.clamp(round_ste(z), -Z_CLIP, Z_CLIP)
        log_scale, mean = self.entropy_parameters(z_hat)
        y_g = y * gain
        y_q = torch.clamp(round_ste(y_g), -Y_CLIP, Y_CLIP)
        anchors = anchor_mask(y.shape[2], y.shape[3], y.device)
        ctx = self.ctx(torch.clamp(y_q, -CTX_CLIP, CTX_CLIP) / gain * anchors) * (1.0 - anchors)
        log_scale = log_scale + ctx[:, :self.cfg.latent]
        mean = mean + ctx[:, self.cfg.latent:]
        scale = torch.exp(torch.clamp(log_scale, max=20.0)) * gain
        centre = torch.clamp(mean * gain, -Y_CLIP, Y_CLIP)
        _, y_likelihood = self.gaussian(y_g, scale, means=centre, training=self.training)
        x_hat = self.g_s(y_q * inv_gain)
        bits_y = -torch.log2(y_likelihood).sum(dim=(1, 2, 3))
        bits_z = -torch.log2(z_likelihood).sum(dim=(1, 2, 3))
        return x_hat, bits_y, bits_z


@torch.no_grad()
def estimate(model: Codec, x, quality: int):
    """(x_hat, bits) of images x (N, 3, H, W in [0, 1], H and W multiples of 64) coded at one quality the
    way the runtime codes them: rounded hyper-latents and gained latents (clipped to the integer ranges),
    the rate as the entropy models' information content of those integers (the runtime's tables quantize
    the same distributions: within about 1 % of the real bytes for v1)."""
    q = torch.full((x.shape[0],), quality, dtype=torch.long, device=x.device)
    gain = torch.exp(model.log_gain[q])[:, :, None, None]
    inv_gain = torch.exp(model.log_inv_gain[q])[:, :, None, None]
    y, features = model.analyse(x)
    z_hat = torch.clamp(torch.round(model.h_a(features)), -Z_CLIP, Z_CLIP)
    flat = z_hat.permute(1, 0, 2, 3).reshape(z_hat.shape[1], 1, -1)  # the bottleneck's (C, 1, N) layout
    z_likelihood = model.entropy_z.likelihood_lower_bound(model.entropy_z._likelihood(flat)[0])
    log_scale, mean = model.entropy_parameters(z_hat)
    y_q = torch.clamp(torch.round(y * gain), -Y_CLIP, Y_CLIP)
    anchors = anchor_mask(y.shape[2], y.shape[3], y.device)
    ctx = model.ctx(torch.clamp(y_q, -CTX_CLIP, CTX_CLIP) / gain * anchors) * (1.0 - anchors)
    scale = torch.exp(torch.clamp(log_scale + ctx[:, :model.cfg.latent], max=20.0)) * gain
    centre = torch.clamp((mean + ctx[:, model.cfg.latent:]) * gain, -Y_CLIP, Y_CLIP)
    y_likelihood = model.gaussian.likelihood_lower_bound(model.gaussian._likelihood(y_q, scale, centre))
    x_hat = model.g_s(y_q * inv_gain).clamp(0.0, 1.0)
    bits = -torch.log2(y_likelihood).sum(dim=(1, 2, 3)) - torch.log2(z_likelihood).sum() / x.shape[0]
    return x_hat, bits


def rd_loss(model: Codec, x, quality, lambdas):
    """(loss, bpp, mse): the batch's mean of bpp + lambda * 255^2 * MSE, and per image its bits per pixel
    (from the noisy latents' likelihoods) and MSE on [0, 1] pixels."""
    x_hat, bits_y, bits_z = model(x, quality)
    mse = (x - x_hat).square().mean(dim=(1, 2, 3))
    bpp = (bits_y + bits_z) / (x.shape[2] * x.shape[3])
    loss = (bpp + lambdas[quality] * 255.0 ** 2 * mse).mean()
    return loss, bpp, mse


def macs(cfg: Config, height=480, width=640) -> dict:
    """GMAC per frame of each deployed part (``edgecodec.models.contract.gmacs``)."""
    return contract.gmacs(cfg.to_dict(), height, width)
