"""The discriminator of every GAN pair: LightCNN-9 with Max-Feature-Map activations."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fsr_jax.models.layers import kaiming_normal

#: (kernel, output width) of the MFM convs; "pool" marks a 2x2 max-pool, stride 2, 'SAME'.
LIGHTCNN9_LAYOUT = (
    (5, 48), "pool",
    (1, 48), (3, 96), "pool",
    (1, 96), (3, 192), "pool",
    (1, 192), (3, 128),
    (1, 128), (3, 128), "pool",
)
#: Width of the MFM fully connected layer (LightCNN-9: 256).
HIDDEN = 256


class MFM(nn.Module):
    """Max-Feature-Map: a conv (kernel > 0) or dense layer (kernel 0) to 2C outputs, then the
    elementwise max of the two halves. (..., C_in) -> (..., features)."""

    features: int
    kernel: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kernel:
            pad = self.kernel // 2
            layer = nn.Conv(2 * self.features, (self.kernel, self.kernel),
                            padding=((pad, pad), (pad, pad)), kernel_init=kaiming_normal,
                            dtype=self.dtype)
        else:
            layer = nn.Dense(2 * self.features, kernel_init=kaiming_normal, dtype=self.dtype)
        first, second = jnp.split(layer(x), 2, axis=-1)
        return jnp.maximum(first, second)


class LightCNN(nn.Module):
    """LightCNN-9 discriminator. (B, H, W, 3) in [0, 1] -> (B, 1) float32 logits.

    Works at 64x64 (HR discriminators) and 16x16 (LR discriminators); the dense layer's input
    size follows from H and W.
    """

    #: Multiplies every width (tests shrink it); 1.0 is LightCNN-9.
    width: float = 1.0
    #: Computation dtype (params stay float32); the logits are float32.
    dtype: Any = jnp.float32
    #: Decision: the logit layer's weights start at zero, so every discriminator starts at
    #: D = 0.5 (unnormalised Kaiming MFM layers start with logits of +-30 on faces, saturated).
    zero_init_logit: bool = True

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        def scaled(n: int) -> int:
            return max(1, round(n * self.width))

        x = images.astype(jnp.float32)
        for item in LIGHTCNN9_LAYOUT:
            if item == "pool":
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
            else:
                kernel, features = item
                x = MFM(scaled(features), kernel, self.dtype)(x)
        x = x.reshape(x.shape[0], -1)
        x = MFM(scaled(HIDDEN), 0, self.dtype)(x)
        logit_init = nn.initializers.zeros if self.zero_init_logit else kaiming_normal
        logits = nn.Dense(1, kernel_init=logit_init, dtype=self.dtype)(x)
        return logits.astype(jnp.float32)
