"""Building blocks shared by the networks: initialisers, resampling ops, the x-s projections.

All tensors are NHWC. The projections `UpProjection` / `DownProjection` are SRFBN's
(kernel s + 4, stride s, padding 2: exactly s-times up or down). Every form below uses the
same parameters and computes the same maths (to float rounding):

- `transpose`: the plain port, a transposed conv up (XLA lowers it to a dilated conv that
  multiplies mostly zeros) and a strided conv down.
- `dense_3x3`: a 3x3 conv on the LR grid plus depth-to-space (up) / space-to-depth plus a
  3x3 conv (down); the kernel taps a phase does not use are zeros (9 taps computed, 4 used).
  Fastest on GPU.
- `block`: up, a 2x2 conv on the LR grid padded by one, depth-to-space and a 2-pixel crop
  (no zero taps; a (h+1)x(w+1) grid), the 2x2 conv run as one matmul over its patches
  (XLA:CPU runs the conv's kernel gradient ~50x slower); down, the strided conv itself,
  which XLA's CPU backend runs without zeros. Fastest on CPU (about 2x `dense_3x3` per
  projection, forward and with gradients).
- `dense` (the default): whichever of the two suits the platform the computation is
  compiled for, chosen at lowering (`lax.platform_dependent`): `block` on CPU,
  `dense_3x3` elsewhere.
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

PROJECTION_IMPLS = ("dense", "transpose", "dense_3x3", "block")
#: The form `dense` resolves to per platform (any other platform: `dense_3x3`).
DENSE_BY_PLATFORM = {"cpu": "block"}
PROJECTION_PADDING = 2


def prelu() -> nn.PReLU:
    """PReLU with one learned slope, initialised at 0.2 (SRFBN's setting)."""
    return nn.PReLU(negative_slope_init=0.2)


def conv(features: int, kernel: int, dtype: Any, name: str | None = None, stride: int = 1,
         kernel_init: Any = kaiming_normal) -> nn.Conv:
    """Conv with bias, PyTorch-style symmetric padding kernel // 2, Kaiming init (or
    `kernel_init`), zero bias.

    A 1x1 stride-1 conv runs as a matmul on CPU (`pointwise_conv`); same parameters and maths.
    """
    pad = kernel // 2
    pointwise = dict(conv_general_dilated=pointwise_conv) if (kernel, stride) == (1, 1) else {}
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        kernel_init=kernel_init, dtype=dtype, name=name, **pointwise,
    )


def pointwise_conv(inputs: jax.Array, kernel: jax.Array, window_strides, padding, lhs_dilation=None,
                   rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                   precision=None) -> jax.Array:
    """`lax.conv_general_dilated` for a 1x1, stride-1, unpadded channels-last conv (HWIO kernel).

    On CPU a dot_general over the channels: XLA's CPU backend runs the conv form about 3x
    slower (on a (16, 64, 64, 384) input). Elsewhere the conv itself.
    """
    trivial = (tuple(kernel.shape[:-2]) == (1, 1) and tuple(window_strides) == (1, 1)
               and all(tuple(p) == (0, 0) for p in padding) and feature_group_count == 1
               and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation)))
    if not trivial:
        raise ValueError("pointwise_conv: only 1x1, stride-1, unpadded, undilated, ungrouped convs")

    def as_conv(x):
        return jax.lax.conv_general_dilated(
            x, kernel, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision)

    def as_dot(x):
        matrix = kernel.reshape(kernel.shape[-2:])
        return jax.lax.dot_general(x, matrix, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)

    return jax.lax.platform_dependent(inputs, cpu=as_dot, default=as_conv)


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


def bicubic_downsample(hr: jax.Array, factor: int = 4) -> jax.Array:
    """Antialiased bicubic x1/factor inside a jitted step: (B, H, W, C) in [0, 1] -> (B, H/f, W/f, C).

    Clipped to [0, 1] as PIL clips its uint8 output; then within 3 grey levels of PIL's
    BICUBIC. DeNet's content target (and, with `bicubic_skip`, its skip path) and the `bicubic`
    teacher's input.
    """
    b, h, w, c = hr.shape
    small = jax.image.resize(hr, (b, h // factor, w // factor, c), "bicubic", antialias=True)
    return jnp.clip(small, 0.0, 1.0)


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


def _conv_as_dot(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    """`_conv_nhwc(x, kernel, 1, pad)` as one matmul over the kernel's patches (im2col).

    For `block`'s small-kernel, wide-output conv (2x2, 64 -> 1024 at scale 4): XLA:CPU runs
    the forward conv about as fast, but lowers its kernel gradient (a conv with a 16x16
    window and a 2x2 output, dim_labels 01fb_o01i->f01b) to its naive emitter, about 50x
    slower than this form's gradient (a matmul); on full FeedbackSR that conv was over 90%
    of a training step. Same maths (the sums over the taps in another order).
    """
    kh, kw, channels, features = kernel.shape
    b, h, w, _ = x.shape
    rows, cols = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i:i + rows, j:j + cols] for i in range(kh) for j in range(kw)], -1)
    matrix = kernel.reshape(kh * kw * channels, features)  # rows in (i, j, c) order, as patches
    return jax.lax.dot_general(patches, matrix, (((3,), (0,)), ((), ())))


def _by_platform(x: jax.Array, forms: dict) -> jax.Array:
    """forms[impl](x) with impl chosen per lowering platform as `DENSE_BY_PLATFORM` says."""
    per_platform = {p: forms[impl] for p, impl in DENSE_BY_PLATFORM.items()}
    return jax.lax.platform_dependent(x, default=forms["dense_3x3"], **per_platform)


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
        s, features = self.scale, self.features

        def transpose(x):
            pad = size - 1 - PROJECTION_PADDING
            return jax.lax.conv_transpose(
                x, kernel, (s, s), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def dense_3x3(x):
            dense = _gather_taps(kernel, _taps(s, transposed=True))  # (3, s, 3, s, C, F)
            dense = dense.transpose(0, 2, 4, 1, 3, 5)               # (3, 3, C, s, s, F)
            dense = dense.reshape(3, 3, x.shape[-1], s * s * features)
            return depth_to_space(_conv_nhwc(x, dense, 1, 1), s)

        def block(x):
            # The uncropped transposed conv puts input m at outputs s*m + k (k < size, the
            # kernel flipped as torch holds it): output block q (s pixels) reads inputs q - j,
            # j < n = ceil(size / s), with taps s*j + r: an n x n conv (padding n - 1) on the
            # LR grid, then depth-to-space and the crop of the padding.
            (h, w, channels), n = x.shape[1:], -(-size // s)
            flipped = jnp.pad(kernel[::-1, ::-1], ((0, n * s - size), (0, n * s - size), (0, 0), (0, 0)))
            taps = flipped.reshape(n, s, n, s, channels, features)[::-1, :, ::-1]
            taps = taps.transpose(0, 2, 4, 1, 3, 5).reshape(n, n, channels, s * s * features)
            full = depth_to_space(_conv_as_dot(x, taps, n - 1), s)  # (B, s(h+n-1), s(w+n-1), F)
            pad = PROJECTION_PADDING
            return full[:, pad:pad + s * h, pad:pad + s * w]

        forms = dict(transpose=transpose, dense_3x3=dense_3x3, block=block)
        y = _by_platform(x, forms) if self.impl == "dense" else forms[self.impl](x)
        return y + bias


class DownProjection(_Projection):
    """Strided conv, kernel scale+4, stride scale, padding 2: (B, sH, sW, C) -> (B, H, W, F).

    `kernel` as flax's nn.Conv would hold it.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias, _ = self.params_and_input(x)
        s = self.scale

        def strided(x):
            return _conv_nhwc(x, kernel, s, PROJECTION_PADDING)

        def dense_3x3(x):
            dense = _gather_taps(kernel, _taps(s, transposed=False))  # (3, s, 3, s, C, F)
            dense = dense.transpose(0, 2, 1, 3, 4, 5)               # (3, 3, s, s, C, F)
            dense = dense.reshape(3, 3, s * s * x.shape[-1], self.features)
            return _conv_nhwc(space_to_depth(x, s), dense, 1, 1)

        forms = dict(transpose=strided, dense_3x3=dense_3x3, block=strided)
        y = _by_platform(x, forms) if self.impl == "dense" else forms[self.impl](x)
        return y + bias
