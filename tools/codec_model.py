"""The learned codec's networks and rate model, in TensorFlow (training and export only).

Architecture (sizes chosen from speed measurements on a 2-core x86 machine, 640x480 frames):

* ``g_a`` analysis, int8 on the edge: conv5x5/2 -> ReLU -> three conv3x3/2 (ReLU between) giving M latent
  channels at 1/16 resolution. Only Conv2D and ReLU, so XNNPACK and the Edge TPU run every op in int8.
* ``h_a`` hyper-analysis, in the same int8 model: three conv3x3/2 (ReLU between) giving Z channels at 1/64.
  It reads the analysis' last hidden features at 1/8 (``hyper_from="features"``) rather than y: the int8
  encoder then needs no second, ungained copy of the last convolution beside the gained one whose output
  is the latent symbols (12% fewer multiply-adds per frame).
* ``h_s`` hyper-synthesis: two (conv3x3 -> depth-to-space) upsamplings and a conv3x3 predicting log-scales of
  the latents; with ``mean=True`` a second conv3x3 head (``h_mean``) on the same features predicts their
  means (Minnen et al. 2018). At run time it is evaluated by ``edgecodec.models.hyper`` in integer
  arithmetic, so encoder and decoder choose identical CDF tables and means on any CPU.
* ``ctx`` checkerboard context (He et al. 2021, ``context=True``): latents are coded in two passes, anchors
  ((row + column) even) first; each non-anchor's log-scale and mean get a correction from its four anchor
  neighbours, a 4-tap convolution that the runtime evaluates in integers as well.
* ``g_s`` synthesis, float on the desktop: sub-pixel convolutions (conv3x3 -> depth-to-space, measured 3x
  faster than Conv2DTranspose under XNNPACK) with inverse GDN (Balle et al. 2016) after the first three.
* Variable rate from one model with gain units (Cui et al. 2021): per quality k a learned per-channel gain
  scales y before rounding, and an inverse gain rescales it before ``g_s``.

The latent entropy model is a Gaussian conditional on the hyper-latent (Balle et al. 2018), and the
hyper-latent's is a per-channel discretized logistic. The predicted mean is rounded to an integer (in gained
units) and the coder codes ``round(y * gain) - mean``: the reconstruction stays ``round(y * gain)`` and the
decoder needs only integers to undo the shift, while the rate counts the centred residual. With
``fractional_mean`` the residual's table is centred at the mean's fractional part (the runtime rounds it to
1/8), so the rate is that of the unrounded mean.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from edgecodec.models import contract  # noqa: E402

# Nine lambdas log-spaced (ratio about 2.2) from 0.00032 to 0.18, for about 0.1 to 1.5 bpp on Kodak.
LAMBDAS = (0.00032, 0.0007, 0.00155, 0.00342, 0.00755, 0.0167, 0.0369, 0.0815, 0.18)
SCALE_MIN = contract.SCALE_MIN
LIKELIHOOD_MIN = 1e-9
LATENT_CLIP = 127.0


@dataclasses.dataclass(frozen=True)
class Config:
    n_enc: tuple = (48, 48, 64)
    latent: int = 128
    hyper: int = 64
    hyper_latent: int = 64
    n_dec: tuple = (64, 64, 32)
    lambdas: tuple = LAMBDAS
    hyper_from: str = "features"
    mean: bool = True
    context: bool = True
    fractional_mean: bool = True

    def __post_init__(self):
        if self.context and not self.mean:
            raise ValueError("the checkerboard context corrects predicted means: it needs mean=True")

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        d = {"hyper_from": "y", "mean": False, "context": False, "fractional_mean": False,
             **d}  # runs from before these options
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _conv(ch, k, stride=1, name=None):
    return tf.keras.layers.Conv2D(ch, k, stride, padding="same", name=name)


class DepthToSpace(tf.keras.layers.Layer):
    def call(self, x):
        return tf.nn.depth_to_space(x, 2)


class IGDN(tf.keras.layers.Layer):
    """Inverse GDN: x * sqrt(beta + gamma @ x^2), with gamma and beta kept positive by reparametrization."""

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.beta_p = self.add_weight(name="beta", shape=(c,), initializer=tf.keras.initializers.Constant(1.0))
        self.gamma_p = self.add_weight(
            name="gamma", shape=(c, c), initializer=tf.keras.initializers.Constant(np.sqrt(0.1) * np.eye(c) + 1e-3))

    def call(self, x):
        beta = tf.square(self.beta_p) + 1e-6
        gamma = tf.square(self.gamma_p)
        norm = tf.tensordot(tf.square(x), gamma, axes=[[3], [0]]) + beta
        return x * tf.sqrt(norm)


# The 3x3 taps that hold a non-anchor latent's four anchor neighbours (up, left, right, down).
CROSS_TAPS = contract.CONTEXT_TAPS


def anchor_mask(height, width):
    """1.0 at anchor positions ((row + column) even), which are coded first; (1, H, W, 1)."""
    i = tf.range(height)[:, None] + tf.range(width)[None, :]
    return tf.cast(tf.equal(i % 2, 0), tf.float32)[None, :, :, None]


class CheckerboardContext(tf.keras.layers.Layer):
    """Checkerboard context model (He et al. 2021): corrections to the log-scale and mean of each non-anchor
    latent from its four decoded anchor neighbours, in ungained units. Zero at start, so a checkpoint without
    it resumes unchanged."""

    def __init__(self, latent, **kwargs):
        super().__init__(**kwargs)
        self.latent = latent

    def build(self, input_shape):
        m = self.latent
        self.taps = self.add_weight(name="taps", shape=(len(CROSS_TAPS), m, 2 * m), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(2 * m,), initializer="zeros")

    def call(self, anchors):
        kernel = tf.scatter_nd(tf.constant(CROSS_TAPS), self.taps, (3, 3, self.latent, 2 * self.latent))
        return tf.nn.conv2d(anchors, kernel, 1, "SAME") + self.bias


def analysis(cfg: Config) -> tf.keras.Sequential:
    n1, n2, n3 = cfg.n_enc
    return tf.keras.Sequential([
        _conv(n1, 5, 2), tf.keras.layers.ReLU(),
        _conv(n2, 3, 2), tf.keras.layers.ReLU(),
        _conv(n3, 3, 2), tf.keras.layers.ReLU(),
        _conv(cfg.latent, 3, 2),
    ], name="g_a")


def hyper_analysis(cfg: Config) -> tf.keras.Sequential:
    first_stride = 2 if cfg.hyper_from == "features" else 1  # features are at 1/8, y at 1/16
    return tf.keras.Sequential([
        _conv(cfg.hyper, 3, first_stride), tf.keras.layers.ReLU(),
        _conv(cfg.hyper, 3, 2), tf.keras.layers.ReLU(),
        _conv(cfg.hyper_latent, 3, 2),
    ], name="h_a")


def hyper_synthesis(cfg: Config) -> tf.keras.Sequential:
    return tf.keras.Sequential([
        _conv(4 * cfg.hyper, 3), DepthToSpace(), tf.keras.layers.ReLU(),
        _conv(4 * cfg.hyper, 3), DepthToSpace(), tf.keras.layers.ReLU(),
        _conv(cfg.latent, 3),
    ], name="h_s")


def synthesis(cfg: Config) -> tf.keras.Sequential:
    d1, d2, d3 = cfg.n_dec
    return tf.keras.Sequential([
        _conv(4 * d1, 3), DepthToSpace(), IGDN(),
        _conv(4 * d2, 3), DepthToSpace(), IGDN(),
        _conv(4 * d3, 3), DepthToSpace(), IGDN(),
        _conv(4 * 3, 3), DepthToSpace(),
    ], name="g_s")


def round_ste(x):
    return x + tf.stop_gradient(tf.round(x) - x)


def gaussian_bits(v, scale):
    """Bits of integer-centred values v under a zero-mean Gaussian of the given scale, per element."""
    v = tf.abs(v)
    upper = 0.5 * tf.math.erfc((v - 0.5) / (scale * math.sqrt(2.0)))
    lower = 0.5 * tf.math.erfc((v + 0.5) / (scale * math.sqrt(2.0)))
    return -tf.math.log(tf.maximum(upper - lower, LIKELIHOOD_MIN)) / math.log(2.0)


def logistic_bits(v, loc, log_scale):
    s = tf.exp(log_scale)
    upper = tf.sigmoid((v - loc + 0.5) / s)
    lower = tf.sigmoid((v - loc - 0.5) / s)
    return -tf.math.log(tf.maximum(upper - lower, LIKELIHOOD_MIN)) / math.log(2.0)


class KerasCodec(tf.keras.Model):
    """All trainable parts of the codec, with the training forward pass."""

    def __init__(self, cfg: Config):
        super().__init__(name="codec")  # weight paths (codec/g_a/...) as in every checkpoint so far
        self.cfg = cfg
        k = len(cfg.lambdas)
        self.g_a = analysis(cfg)
        self.h_a = hyper_analysis(cfg)
        self.h_s = hyper_synthesis(cfg)
        if cfg.mean:  # zero at start: a scale-only checkpoint loads and behaves unchanged
            self.h_mean = tf.keras.layers.Conv2D(cfg.latent, 3, padding="same", name="h_mean",
                                                 kernel_initializer="zeros", bias_initializer="zeros")
        if cfg.context:
            self.ctx = CheckerboardContext(cfg.latent, name="ctx")
        self.g_s = synthesis(cfg)
        mid = math.exp(np.mean(np.log(cfg.lambdas)))
        init = np.array([[0.5 * math.log(lam / mid)] * cfg.latent for lam in cfg.lambdas], np.float32)
        self.log_gain = self.add_weight(name="log_gain", shape=(k, cfg.latent),
                                        initializer=tf.keras.initializers.Constant(init))
        self.log_inv_gain = self.add_weight(name="log_inv_gain", shape=(k, cfg.latent),
                                            initializer=tf.keras.initializers.Constant(-init))
        self.z_loc = self.add_weight(name="z_loc", shape=(cfg.hyper_latent,), initializer="zeros")
        self.z_log_scale = self.add_weight(name="z_log_scale", shape=(cfg.hyper_latent,),
                                           initializer=tf.keras.initializers.Constant(1.0))

    def analyse(self, x):
        """(y, last hidden features of g_a)."""
        if not self.g_a.built:
            self.g_a(x)  # build through the Sequential so weight names stay codec/g_a/...
        h = x
        for layer in self.g_a.layers[:-1]:
            h = layer(h)
        return self.g_a.layers[-1](h), h

    def build_all(self, size=64):
        self(tf.zeros((1, size, size, 3)), tf.zeros((1,), tf.int32), training=False)

    def call(self, x, quality, training=False):
        """Return (x_hat, bits_y, bits_z) per image; quality is an int tensor (batch,)."""
        gain = tf.exp(tf.gather(self.log_gain, quality))[:, None, None, :]
        inv_gain = tf.exp(tf.gather(self.log_inv_gain, quality))[:, None, None, :]
        y, features = self.analyse(x)
        z = self.h_a(features if self.cfg.hyper_from == "features" else y)
        if training:
            z_noisy = z + tf.random.uniform(tf.shape(z), -0.5, 0.5)
        else:
            z_noisy = tf.round(z)
        z_hat = tf.clip_by_value(round_ste(z), -LATENT_CLIP, LATENT_CLIP)
        if not self.h_s.built:
            self.h_s(z_hat)  # build through the Sequential so weight names stay codec/h_s/...
        hidden = z_hat
        for layer in self.h_s.layers[:-1]:
            hidden = layer(hidden)
        log_scale = self.h_s.layers[-1](hidden)
        mean = self.h_mean(hidden) if self.cfg.mean else None
        y_g = y * gain
        y_q = tf.clip_by_value(round_ste(y_g), -LATENT_CLIP, LATENT_CLIP)
        if self.cfg.context:
            anchors = anchor_mask(tf.shape(y)[1], tf.shape(y)[2])
            ctx = self.ctx(y_q / gain * anchors) * (1.0 - anchors)
            log_scale = log_scale + ctx[..., :self.cfg.latent]
            mean = mean + ctx[..., self.cfg.latent:]
        scale = tf.maximum(tf.exp(log_scale) * gain, SCALE_MIN)
        y_noisy = y_g + tf.random.uniform(tf.shape(y_g), -0.5, 0.5) if training else tf.round(y_g)
        if self.cfg.mean:
            # The coder centres each table at the mean's fraction too (to 1/8): rate is then measured
            # from the unrounded mean; otherwise from the rounded one, as in the first models.
            centre = mean * gain if self.cfg.fractional_mean else round_ste(mean * gain)
            y_noisy = y_noisy - tf.clip_by_value(centre, -LATENT_CLIP, LATENT_CLIP)
        x_hat = self.g_s(y_q * inv_gain)
        bits_y = tf.reduce_sum(gaussian_bits(y_noisy, scale), axis=[1, 2, 3])
        bits_z = tf.reduce_sum(logistic_bits(z_noisy, self.z_loc, self.z_log_scale), axis=[1, 2, 3])
        return x_hat, bits_y, bits_z
