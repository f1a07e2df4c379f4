"""DeNet / DSNet: HR face -> LR face (x1/4) through residual blocks and two stride-2 convs."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fsr_jax.models.layers import bicubic_downsample, conv, kaiming_normal


class ResidualBlock(nn.Module):
    """conv3x3-ReLU-conv3x3 + skip, no normalisation (Decision: EDSR-style, the paper says
    only "residual blocks [13]"). (B, H, W, nf) -> (B, H, W, nf)."""

    features: int
    dtype: Any = jnp.float32
    #: Initialise the last conv at zero, so that the block starts as the identity.
    zero_init_residual: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(conv(self.features, 3, self.dtype)(x))
        last_init = nn.initializers.zeros if self.zero_init_residual else kaiming_normal
        return x + conv(self.features, 3, self.dtype, kernel_init=last_init)(y)


class Downsampler(nn.Module):
    """DeNet / DSNet. (B, H, W, 3) in [0, 1] -> (B, H/4, W/4, 3) float32, unclipped (about [0, 1]).

    conv3x3 (3 -> nf), `blocks` residual blocks, two conv3x3 stride 2 + ReLU, conv3x3 (nf -> 3);
    with `bicubic_skip`, plus the bicubic downscaling of the input.
    """

    #: Feature width nf (paper: 64).
    features: int = 64
    #: Residual blocks (paper: 16).
    blocks: int = 16
    #: Computation dtype (params stay float32); the output is float32.
    dtype: Any = jnp.float32
    #: Decision: each block's last conv starts at zero (the block starts as the identity).
    #: Unnormalised Kaiming-initialised blocks each double the variance; 16 of them put the
    #: initial output in the thousands on faces in [0, 1] (False: plain Kaiming, the paper's silence).
    zero_init_residual: bool = True
    #: Add the input's bicubic downscaling to the output, so that the network learns only how
    #: real LR departs from bicubic (False: the paper's plain network). Same parameters; the last
    #: conv then starts at zero, so that the network starts as bicubic downscaling itself.
    bicubic_skip: bool = False

    @nn.compact
    def __call__(self, hr: jax.Array) -> jax.Array:
        if hr.shape[1] % 4 or hr.shape[2] % 4:
            raise ValueError(f"Downsampler needs H and W divisible by 4, got {hr.shape[1:3]}")
        x = conv(self.features, 3, self.dtype, name="head")(hr.astype(jnp.float32))
        for i in range(self.blocks):
            x = ResidualBlock(self.features, self.dtype, self.zero_init_residual, name=f"block_{i}")(x)
        x = nn.relu(conv(self.features, 3, self.dtype, name="down_0", stride=2)(x))
        x = nn.relu(conv(self.features, 3, self.dtype, name="down_1", stride=2)(x))
        tail_init = nn.initializers.zeros if self.bicubic_skip else kaiming_normal
        out = conv(3, 3, self.dtype, name="tail", kernel_init=tail_init)(x).astype(jnp.float32)
        return out + bicubic_downsample(hr.astype(jnp.float32)) if self.bicubic_skip else out
