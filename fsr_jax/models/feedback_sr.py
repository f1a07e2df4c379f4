"""TNet / SNet: the recurrent feedback SR net with progressively embedded edge priors (Fig. 2).

One class, two instances. Each of the `steps` iterations runs on the LR grid:
shallow features + previous hidden state + edge prior -> fusion -> SRFBN feedback block
-> reconstruction block -> residual, added to the bilinear upsampling of the input (eq. 1).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fsr_jax import edges as edge_ops
from fsr_jax.models.layers import (
    PROJECTION_IMPLS, DownProjection, UpProjection, bilinear_upsample, conv, prelu, space_to_depth,
)

EDGE_KINDS = ("canny", "dog")


class ConvPReLU(nn.Module):
    """conv(kernel) + PReLU: (B, H, W, C) -> (B, H, W, features)."""

    features: int
    kernel: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return prelu()(conv(self.features, self.kernel, self.dtype)(x))


class Projection(nn.Module):
    """An up- or down-projection followed by PReLU."""

    features: int
    scale: int
    up: bool
    impl: str
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        layer = UpProjection if self.up else DownProjection
        return prelu()(layer(self.features, self.scale, self.impl, self.dtype)(x))


class FeedbackBlock(nn.Module):
    """SRFBN's feedback block without `compress_in` (the fusion convs replace it).

    G groups of up-projection (LR -> HR) and down-projection (HR -> LR); from group 2 on,
    1x1 convs ("uptran" / "downtran") fuse all earlier LR / HR features first;
    `compress_out` fuses the G LR outputs. (B, h, w, nf) -> (B, h, w, nf).
    """

    features: int
    groups: int
    scale: int
    projection: str
    dtype: Any = jnp.float32

    def setup(self):
        nf, kw = self.features, dict(scale=self.scale, impl=self.projection, dtype=self.dtype)
        self.up = [Projection(nf, up=True, **kw, name=f"up_{g}") for g in range(self.groups)]
        self.down = [Projection(nf, up=False, **kw, name=f"down_{g}") for g in range(self.groups)]
        self.uptran = [ConvPReLU(nf, 1, self.dtype, name=f"uptran_{g}") for g in range(1, self.groups)]
        self.downtran = [ConvPReLU(nf, 1, self.dtype, name=f"downtran_{g}") for g in range(1, self.groups)]
        self.compress_out = ConvPReLU(nf, 1, self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        lr_features, hr_features = [x], []
        for g in range(self.groups):
            lr = jnp.concatenate(lr_features, -1)
            if g > 0:
                lr = self.uptran[g - 1](lr)
            hr_features.append(self.up[g](lr))
            hr = jnp.concatenate(hr_features, -1)
            if g > 0:
                hr = self.downtran[g - 1](hr)
            lr_features.append(self.down[g](hr))
        return self.compress_out(jnp.concatenate(lr_features[1:], -1))


class FeedbackSR(nn.Module):
    """TNet / SNet. (B, h, w, 3) LR in [0, 1] -> list of `steps` SR images (B, s*h, s*w, 3).

    The images are float32, unclipped (about [0, 1]); the last is the result. With
    `return_edges=True` also returns {'canny': E1, 'dog': E2}, each (B, s*h, s*w, 1) float32,
    the edge maps fed to iterations 2 and 3 (zeros where that edge kind is off).
    """

    #: Feature width nf (paper / SRFBN: 64).
    features: int = 64
    #: Up/down-projection groups G in the feedback block (SRFBN: 6).
    groups: int = 6
    #: Recurrent iterations T; the paper unrolls 3 (Canny after the 1st, DoG after the 2nd).
    steps: int = 3
    #: Upscaling factor; the paper works at 4x (16 -> 64).
    scale: int = 4
    #: Edge priors in order of iterations 2, 3...: (), ('canny',) or ('canny', 'dog') (paper).
    edges: Sequence[str] = ("canny", "dog")
    #: Canny hysteresis thresholds on 0..255 grey; Decision: OpenCV's usual 50/150 (paper: none).
    canny_thresholds: tuple[float, float] = (50.0, 150.0)
    #: Canny implementation: 'jax' (on the device, equal to cv2.Canny) or 'opencv' (host callback).
    canny_impl: str = "jax"
    #: DoG sigmas; Decision: 1.0 and 1.6, the usual ratio approximating the LoG.
    dog_sigmas: tuple[float, float] = (1.0, 1.6)
    #: Up/down projection form, equal maths and parameters (layers.py): 'dense' (the fastest
    #: for the platform: 'block' on CPU, 'dense_3x3' elsewhere), 'dense_3x3', 'block' or
    #: 'transpose' (the plain port).
    projection: str = "dense"
    #: Computation dtype (params stay float32); edges and outputs are float32.
    dtype: Any = jnp.float32

    def __post_init__(self):
        if tuple(self.edges) not in ((), EDGE_KINDS[:1], EDGE_KINDS):
            raise ValueError(
                f"edges must be (), ('canny',) or ('canny', 'dog'), got {tuple(self.edges)!r}"
            )
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.canny_impl not in edge_ops.CANNY_IMPLS:
            raise ValueError(f"canny_impl must be one of {edge_ops.CANNY_IMPLS}, got {self.canny_impl!r}")
        if self.projection not in PROJECTION_IMPLS:
            raise ValueError(f"projection must be one of {PROJECTION_IMPLS}, got {self.projection!r}")
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4 (SRFBN's projections), got {self.scale}")
        super().__post_init__()

    def edge_prior(self, kind: str | None, image: jax.Array) -> jax.Array:
        """Edge map (B, H, W, 1) float32 of an SR image, or zeros where `kind` is None."""
        if kind == "canny":
            return edge_ops.canny(image, *self.canny_thresholds, impl=self.canny_impl)
        if kind == "dog":
            return edge_ops.dog(image, self.dog_sigmas)
        return jnp.zeros(image.shape[:-1] + (1,), jnp.float32)

    @nn.compact
    def __call__(self, lr: jax.Array, return_edges: bool = False):
        nf, dtype = self.features, self.dtype
        lr = lr.astype(jnp.float32)
        upsampled = bilinear_upsample(lr, self.scale)
        shallow = ConvPReLU(nf, 1, dtype, name="sfe_1")(ConvPReLU(4 * nf, 3, dtype, name="sfe_0")(lr))
        fuse_in, fuse_out = ConvPReLU(nf, 1, dtype, name="fuse_0"), ConvPReLU(nf, 3, dtype, name="fuse_1")
        block = FeedbackBlock(nf, self.groups, self.scale, self.projection, dtype, name="feedback")
        recb_up = Projection(nf, self.scale, True, self.projection, dtype, name="recb_up")
        recb_out = conv(3, 3, dtype, name="recb_out")

        hidden = jnp.zeros(shallow.shape[:-1] + (nf,), shallow.dtype)
        prior = jnp.zeros(upsampled.shape[:-1] + (1,), jnp.float32)
        outputs, edge_maps = [], {}
        for t in range(self.steps):
            prior_lr = space_to_depth(prior, self.scale).astype(shallow.dtype)
            fused = fuse_out(fuse_in(jnp.concatenate([shallow, hidden, prior_lr], -1)))
            hidden = block(fused)
            image = recb_out(recb_up(hidden)).astype(jnp.float32) + upsampled
            outputs.append(image)
            if t + 1 < self.steps:
                kind = self.edges[t] if t < len(self.edges) else None
                prior = self.edge_prior(kind, image)
                edge_maps[EDGE_KINDS[t] if t < len(EDGE_KINDS) else f"edge_{t}"] = prior
        if return_edges:
            return outputs, edge_maps
        return outputs
