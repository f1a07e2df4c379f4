"""Building blocks shared by the networks: initialisers, resampling ops, the x-s projections.

All tensors are NHWC. The projections `UpProjection` / `DownProjection` are SRFBN's
(kernel s + 4, stride s, padding 2: exactly s-times up or down); each has a `transpose`
(strided / transposed conv, as a plain port) and an exactly equivalent `dense` form (a
3x3 conv plus depth-to-space / space-to-depth, same parameters) that runs without the
zeros XLA multiplies in a transposed conv.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

#: Kaiming-normal with fan-in (untruncated, as torch.nn.init.kaiming_normal_).
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

PROJECTION_IMPLS = ("dense", "transpose")
PROJECTION_PADDING = 2


def prelu() -> nn.PReLU:
    """PReLU with one learned slope, initialised at 0.2 (SRFBN's setting)."""
    return nn.PReLU(negative_slope_init=0.2)


def conv(features: int, kernel: int, dtype: Any, name: str | None = None, stride: int = 1) -> nn.Conv:
    """Conv with bias, PyTorch-style symmetric padding kernel // 2, Kaiming init, zero bias."""
    pad = kernel // 2
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        kernel_init=kaiming_normal, dtype=dtype, name=name,
    )


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """(B, H, W, C) -> (B, H/block, W/block, block*block*C); channel order (row, col, c)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // block, w // block, block * block * c)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """Inverse of `space_to_depth`: (B, H, W, block*block*C) -> (B, H*block, W*block, C)."""
    b, h, w, c = x.shape
    out = c // (block * block)
    x = x.reshape(b, h, w, block, block, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * block, w * block, out)


def bilinear_upsample(x: jax.Array, scale: int) -> jax.Array:
    """Bilinear x`scale` with half-pixel centres (PyTorch align_corners=False, cv2 INTER_LINEAR).

    (B, H, W, C) -> (B, H*scale, W*scale, C), same dtype.
    """
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h * scale, w * scale, c), "bilinear", antialias=False)


@functools.cache
def _taps(scale: int, transposed: bool) -> np.ndarray:
    """Kernel taps of a projection (kernel scale+4, stride scale, padding 2) in dense form.

    Returns int (3, scale): taps[d, r] is the 1-D kernel index that phase r uses at block
    offset d - 1, or -1 where it uses none. Transposed: output o = scale*m + r reads input
    m + d - 1. Strided: output m reads input scale*(m + d - 1) + r.
    """
    size = scale + 4
    phase = np.arange(scale)
    first = (size - 1 - PROJECTION_PADDING) - phase if transposed else PROJECTION_PADDING + phase
    taps = scale * (np.arange(3)[:, None] - 1) + first[None, :]
    taps = np.where((taps >= 0) & (taps < size), taps, -1)
    assert sorted(taps[taps >= 0]) == list(range(size)), f"scale {scale}: taps {taps}"
    return taps


def _gather_taps(kernel: jax.Array, taps: np.ndarray) -> jax.Array:
    """kernel (K, K, ...) -> (3, s, 3, s, ...): [dy, ry, dx, rx] = kernel[taps[dy, ry], taps[dx, rx]],
    zero where a tap is missing."""
    index = np.maximum(taps, 0)
    valid = (taps >= 0).astype(np.float32)
    rows = kernel[index]                       # (3, s, K, ...)
    grid = rows[:, :, index]                   # (3, s, 3, s, ...)
    mask = valid[:, :, None, None] * valid[None, None, :, :]
    return grid * mask.reshape(mask.shape + (1,) * (grid.ndim - 4)).astype(kernel.dtype)


def _conv_nhwc(x: jax.Array, kernel: jax.Array, stride: int, pad: int) -> jax.Array:
    """Cross-correlation of NHWC `x` with an HWIO `kernel`, symmetric zero padding `pad`."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


class _Projection(nn.Module):
    """Params of a projection: `kernel` (K, K, C, F), K = scale + 4, and `bias` (F,)."""

    features: int
    scale: int = 4
    impl: str = "dense"
    dtype: Any = jnp.float32

    def params_and_input(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, int]:
        """(x, kernel, bias) cast to the computation dtype, and the kernel size K."""
        size = self.scale + 4
        kernel = self.param("kernel", kaiming_normal, (size, size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
        return x, kernel, bias, size


class UpProjection(_Projection):
    """Transposed conv, kernel scale+4, stride scale, padding 2: (B, H, W, C) -> (B, sH, sW, F).

    `kernel` is lax.conv_transpose's (unflipped).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias, size = self.params_and_input(x)
        if self.impl == "transpose":
            pad = size - 1 - PROJECTION_PADDING
            y = jax.lax.conv_transpose(
                x, kernel, (self.scale, self.scale), ((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            return y + bias
        dense = _gather_taps(kernel, _taps(self.scale, transposed=True))  # (3, s, 3, s, C, F)
        dense = dense.transpose(0, 2, 4, 1, 3, 5)               # (3, 3, C, s, s, F)
        dense = dense.reshape(3, 3, x.shape[-1], self.scale * self.scale * self.features)
        return depth_to_space(_conv_nhwc(x, dense, 1, 1), self.scale) + bias


class DownProjection(_Projection):
    """Strided conv, kernel scale+4, stride scale, padding 2: (B, sH, sW, C) -> (B, H, W, F).

    `kernel` as flax's nn.Conv would hold it.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias, _ = self.params_and_input(x)
        if self.impl == "transpose":
            return _conv_nhwc(x, kernel, self.scale, PROJECTION_PADDING) + bias
        dense = _gather_taps(kernel, _taps(self.scale, transposed=False))  # (3, s, 3, s, C, F)
        dense = dense.transpose(0, 2, 1, 3, 4, 5)               # (3, 3, s, s, C, F)
        dense = dense.reshape(3, 3, self.scale * self.scale * x.shape[-1], self.features)
        return _conv_nhwc(space_to_depth(x, self.scale), dense, 1, 1) + bias
