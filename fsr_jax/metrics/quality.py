"""PSNR and SSIM of image pairs, in jnp (jit-able, batched).

**Decision**: both are computed on RGB (the paper does not say RGB or Y), with data range 255:
images in [0, 1] are scaled by 255, not rounded (quantise before calling to score saved 8-bit
images). SSIM is scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)`: an 11-tap Gaussian window,
population statistics, the map averaged over the pixels the window covers fully and over channels.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scikit-image truncates its Gaussian at 3.5 sigma
K1, K2 = 0.01, 0.03


def _pair(x, y) -> tuple[jax.Array, jax.Array]:
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (N, H, W, C) batches of one shape, got {x.shape} and {y.shape}")
    return x * DATA_RANGE, y * DATA_RANGE


@jax.jit
def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
    """(N, H, W, C) images in [0, 1] -> (N,) PSNR in dB at data range 255 (inf where equal)."""
    x, y = _pair(x, y)
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(DATA_RANGE**2 / mse)


def _gaussian_taps() -> np.ndarray:
    offsets = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _blur_valid(x: jax.Array) -> jax.Array:
    """Separable Gaussian over H and W of (N, H, W, C), keeping only fully covered pixels."""
    taps = _gaussian_taps()
    size = len(taps)
    h, w = x.shape[1] - size + 1, x.shape[2] - size + 1
    x = sum(float(t) * x[:, k:k + h] for k, t in enumerate(taps))
    return sum(float(t) * x[:, :, k:k + w] for k, t in enumerate(taps))


@jax.jit
def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
    """(N, H, W, C) images in [0, 1], H and W >= 11 -> (N,) SSIM, the mean over channels and pixels."""
    x, y = _pair(x, y)
    # Shifting both images by one per-channel constant leaves (co)variances unchanged and keeps
    # float32 accuracy where E[x^2] - E[x]^2 would otherwise cancel.
    centre = jnp.mean(x, axis=(1, 2), keepdims=True)
    x, y = x - centre, y - centre
    mx, my = _blur_valid(x), _blur_valid(y)
    vx = _blur_valid(x * x) - mx * mx
    vy = _blur_valid(y * y) - my * my
    cxy = _blur_valid(x * y) - mx * my
    mx, my = mx + centre, my + centre
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return jnp.mean(ssim_map, axis=(1, 2, 3))
