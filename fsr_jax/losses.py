"""The paper's loss terms: content, reconstruction, cycle and adversarial (log-loss or hinge).

Images are NHWC float32 in about [0, 1]; every loss is a float32 scalar averaged over the
batch and every pixel and channel, so it does not depend on how the batch is split.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

GAN_LOSSES = ("logistic", "hinge")


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute error, E|a - b|_1 (eq. 2, the content loss)."""
    return jnp.mean(jnp.abs(a - b))


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean squared error, E|a - b|_2^2 (eq. 7, the cycle loss)."""
    return jnp.mean(jnp.square(a - b))


def reconstruction(target: jax.Array, outputs: Sequence[jax.Array]) -> jax.Array:
    """Eq. 5: the mean over the T iterations of the MSE between the target and each SR image."""
    return sum(mse(target, out) for out in outputs) / len(outputs)


def generator_adversarial(fake_logits: jax.Array, kind: str) -> jax.Array:
    """The generator's adversarial loss on the discriminator's logits of its fakes (B, 1).

    logistic: the non-saturating form of the paper's log-loss, E[-log D(fake)];
    hinge: E[-D(fake)].
    """
    if kind == "logistic":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if kind == "hinge":
        return -jnp.mean(fake_logits)
    raise ValueError(f"gan loss must be one of {GAN_LOSSES}, got {kind!r}")


def discriminator_adversarial(real_logits: jax.Array, fake_logits: jax.Array, kind: str) -> jax.Array:
    """The discriminator's loss: logistic -E[log D(real)] - E[log(1 - D(fake))] (eq. 3);
    hinge E[relu(1 - D(real))] + E[relu(1 + D(fake))]."""
    if kind == "logistic":
        return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    raise ValueError(f"gan loss must be one of {GAN_LOSSES}, got {kind!r}")
