"""TNet / SNet: the recurrent feedback SR net with progressively embedded edge priors (Fig. 2).

One class, two instances. Each of the `iterations` recurrent iterations runs on the LR grid:
shallow features + previous hidden state + edge prior -> fusion -> SRFBN feedback block
-> reconstruction block -> residual, added to the bilinear upsampling of the input (eq. 1).
The edge priors are looked up by name in `fsr_jax.edges.PRIORS`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fsr_jax import edges as edge_ops
from fsr_jax.models.layers import (
    PROJECTION_IMPLS, DownProjection, UpProjection, bilinear_upsample, conv, prelu, space_to_depth,
)


def _hashable(value: Any) -> Any:
    """Lists (as JSON configs hold them) and tuples as tuples, recursively; other values as given."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def frozen_prior_fields(values: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """Prior config field values as FeedbackSR holds them: ((name, value), ...) sorted by name,
    sequences as tuples (hashable). Refuses names no registered prior reads."""
    pairs = dict(values.items() if isinstance(values, Mapping) else values)
    known = edge_ops.prior_defaults()
    unknown = sorted(name for name in pairs if name not in known)
    if unknown:
        raise ValueError(f"prior_fields: no registered edge prior reads {unknown}; "
                         f"the registered priors read {list(known)}")
    return tuple((name, _hashable(pairs[name])) for name in sorted(pairs))


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
    """TNet / SNet. (B, h, w, 3) LR in [0, 1] -> list of `iterations` SR images (B, s*h, s*w, 3).

    The images are float32, unclipped (about [0, 1]); the last is the result. With
    `return_edges=True` also returns {prior name: map}, each (B, s*h, s*w, 1) float32, the
    edge maps fed to iterations 2, 3, ... (paper: {'canny': E1, 'dog': E2}); iterations
    without a prior get zeros, which are not returned.
    """

    #: Feature width nf (paper / SRFBN: 64).
    features: int = 64
    #: Up/down-projection groups G in the feedback block (SRFBN: 6).
    groups: int = 6
    #: Recurrent iterations T; the paper unrolls 3 (Canny after the 1st, DoG after the 2nd).
    iterations: int = 3
    #: Upscaling factor; the paper works at 4x (16 -> 64).
    scale: int = 4
    #: Edge priors fed to iterations 2, 3, ... in order, by their names in
    #: `fsr_jax.edges.PRIORS`; at most iterations - 1, no name twice; later iterations get
    #: zeros. Paper: ('canny', 'dog'); Table 3's ablations: () and ('canny',).
    edges: Sequence[str] = ("canny", "dog")
    #: Values of the priors' config fields (`edges.PRIORS[name].fields`) by field name, e.g.
    #: {'canny_thresholds': (20.0, 60.0)}, held as sorted (name, value) pairs (hashable, see
    #: `frozen_prior_fields`); a field left out takes the registry's default.
    prior_fields: Any = ()
    #: Up/down projection form, equal maths and parameters (layers.py): 'dense' (the fastest
    #: for the platform: 'block' on CPU, 'dense_3x3' elsewhere), 'dense_3x3', 'block' or
    #: 'transpose' (the plain port).
    projection: str = "dense"
    #: Computation dtype (params stay float32); edges and outputs are float32.
    dtype: Any = jnp.float32

    def __post_init__(self):
        # Flax hashes modules (jit static state): keep every attribute hashable.
        object.__setattr__(self, "edges", tuple(self.edges))
        object.__setattr__(self, "prior_fields", frozen_prior_fields(self.prior_fields))
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        unknown = edge_ops.unknown_priors(self.edges)
        if unknown:
            raise ValueError(f"edges must be registered edge priors: unknown {unknown}; "
                             f"known {list(edge_ops.PRIORS)}")
        if len(self.edges) > self.iterations - 1:
            raise ValueError(f"edges must be at most iterations - 1 = {self.iterations - 1} priors "
                             f"(they feed iterations 2..{self.iterations}), got {self.edges!r}")
        if len(set(self.edges)) < len(self.edges):
            raise ValueError(f"edges must not name a prior twice (maps are returned by name), "
                             f"got {self.edges!r}")
        for prior in edge_ops.PRIORS.values():
            if prior.check is not None:
                prior.check(**self.fields_of(prior))
        if self.projection not in PROJECTION_IMPLS:
            raise ValueError(f"projection must be one of {PROJECTION_IMPLS}, got {self.projection!r}")
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4 (SRFBN's projections), got {self.scale}")
        super().__post_init__()

    def prior_field(self, name: str) -> Any:
        """The value of a prior config field: as given in `prior_fields`, else the default."""
        given = dict(self.prior_fields)
        return given[name] if name in given else _hashable(edge_ops.prior_defaults()[name])

    def fields_of(self, prior: edge_ops.EdgePrior) -> dict[str, Any]:
        """{field: value} of the config fields `prior` reads."""
        return {name: self.prior_field(name) for name in prior.fields}

    def host_priors(self) -> list[str]:
        """The priors of `edges` that run as host callbacks with this net's field values."""
        return [name for name in self.edges if edge_ops.PRIORS[name].on_host is not None
                and edge_ops.PRIORS[name].on_host(**self.fields_of(edge_ops.PRIORS[name]))]

    def edge_prior(self, name: str | None, image: jax.Array) -> jax.Array:
        """Edge map (B, H, W, 1) float32 of an SR image by the prior `name`, or zeros for None."""
        if name is None:
            return jnp.zeros(image.shape[:-1] + (1,), jnp.float32)
        prior = edge_ops.PRIORS[name]
        return prior.fn(image, **self.fields_of(prior))

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
        for t in range(self.iterations):
            prior_lr = space_to_depth(prior, self.scale).astype(shallow.dtype)
            fused = fuse_out(fuse_in(jnp.concatenate([shallow, hidden, prior_lr], -1)))
            hidden = block(fused)
            image = recb_out(recb_up(hidden)).astype(jnp.float32) + upsampled
            outputs.append(image)
            if t + 1 < self.iterations:
                name = self.edges[t] if t < len(self.edges) else None
                prior = self.edge_prior(name, image)
                if name is not None:
                    edge_maps[name] = prior
        if return_edges:
            return outputs, edge_maps
        return outputs
