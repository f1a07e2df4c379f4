"""MTCNN's three face-detector networks (Zhang et al. 2016) as Flax modules, for the published
weights (facenet-pytorch 2.6.0's P/R/O-Nets, converted by fsr_jax.metrics.weights).

Inputs are RGB in MTCNN's range, (pixel - 127.5) / 128, NHWC float32. Layer names are the
reference's (conv1, prelu1, ..., dense5_1) so the converted weights map one to one.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class PReLU(nn.Module):
    """max(0, x) + alpha * min(0, x) with one alpha per channel (the last axis)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, alpha * x)


def _conv(features: int, kernel: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), padding="VALID", name=name)


def _max_pool_ceil(x: jax.Array, window: int) -> jax.Array:
    """Max-pool, stride 2, torch's ceil_mode: a window that runs past the edge pools what it covers."""
    rows, cols = x.shape[1:3]
    pad_rows = (-(rows - window) % 2) if rows > window else 0
    pad_cols = (-(cols - window) % 2) if cols > window else 0
    return nn.max_pool(x, (window, window), (2, 2), padding=((0, pad_rows), (0, pad_cols)))


class PNet(nn.Module):
    """Proposal net, fully convolutional: (B, H, W, 3) -> face probability (B, H', W') and box
    offsets (B, H', W', 4), one cell per 12x12 window at stride 2.

    `valid`: optional int (B, 2), the rows and columns of each input that are image (the rest is
    padding): conv1 outputs that read padding are left out of the 2x2 max-pool, so each cell
    equals the reference's ceil-mode result on that image alone. Without it the input is all image
    and a conv1 output of odd height or width pools its last row/column alone (ceil mode).
    """

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        x = PReLU(name="prelu1")(_conv(10, 3, "conv1")(x))
        if valid is None:
            x = _max_pool_ceil(x, 2)
        else:
            rows = jnp.arange(x.shape[1])[None, :, None] < (valid[:, 0] - 2)[:, None, None]
            cols = jnp.arange(x.shape[2])[None, None, :] < (valid[:, 1] - 2)[:, None, None]
            x = jnp.where((rows & cols)[..., None], x, -jnp.inf)
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = PReLU(name="prelu2")(_conv(16, 3, "conv2")(x))
        x = PReLU(name="prelu3")(_conv(32, 3, "conv3")(x))
        probability = jax.nn.softmax(_conv(2, 1, "conv4_1")(x), axis=-1)[..., 1]
        return probability, _conv(4, 1, "conv4_2")(x)


class RNet(nn.Module):
    """Refine net: (B, 24, 24, 3) -> face probability (B,) and box offsets (B, 4)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = _max_pool_ceil(PReLU(name="prelu1")(_conv(28, 3, "conv1")(x)), 3)
        x = _max_pool_ceil(PReLU(name="prelu2")(_conv(48, 3, "conv2")(x)), 3)
        x = PReLU(name="prelu3")(_conv(64, 2, "conv3")(x))
        x = jnp.swapaxes(x, 1, 2).reshape(len(x), -1)  # the reference flattens (W, H, C)
        x = PReLU(name="prelu4")(nn.Dense(128, name="dense4")(x))
        probability = jax.nn.softmax(nn.Dense(2, name="dense5_1")(x), axis=-1)[:, 1]
        return probability, nn.Dense(4, name="dense5_2")(x)


class ONet(nn.Module):
    """Output net: (B, 48, 48, 3) -> face probability (B,), box offsets (B, 4) and five
    landmarks (B, 10): x of eyes, nose, mouth corners, then their y, as shares of the box."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        x = _max_pool_ceil(PReLU(name="prelu1")(_conv(32, 3, "conv1")(x)), 3)
        x = _max_pool_ceil(PReLU(name="prelu2")(_conv(64, 3, "conv2")(x)), 3)
        x = _max_pool_ceil(PReLU(name="prelu3")(_conv(64, 3, "conv3")(x)), 2)
        x = PReLU(name="prelu4")(_conv(128, 2, "conv4")(x))
        x = jnp.swapaxes(x, 1, 2).reshape(len(x), -1)
        x = PReLU(name="prelu5")(nn.Dense(256, name="dense5")(x))
        probability = jax.nn.softmax(nn.Dense(2, name="dense6_1")(x), axis=-1)[:, 1]
        return probability, nn.Dense(4, name="dense6_2")(x), nn.Dense(10, name="dense6_3")(x)


NETS = {"pnet": (PNet, 12), "rnet": (RNet, 24), "onet": (ONet, 48)}


def abstract_params(name: str) -> dict:
    """The parameter shapes of MTCNN net `name` ('pnet', 'rnet' or 'onet'), without computing them."""
    module, size = NETS[name]
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(module().init, jax.random.key(0), x)["params"]
