"""Edge priors of the SR nets: Canny (OpenCV on the host) and Difference of Gaussians (jnp).

Both map RGB images (B, H, W, 3) float in [0, 1] to one-channel edge maps (B, H, W, 1) float32
and stop gradients: the paper computes them with OpenCV, outside the autodiff graph.
"""
from __future__ import annotations

import functools
import math

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from fsr_jax.mesh import DATA_AXIS

#: ITU-R BT.601 luma weights, as OpenCV's RGB2GRAY uses them for float images.
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def to_uint8(images: jax.Array) -> jax.Array:
    """Float images in [0, 1] (any shape) -> uint8 0..255 by uint8(round(255 * clip(x, 0, 1)))."""
    return jnp.round(255.0 * jnp.clip(images, 0.0, 1.0)).astype(jnp.uint8)


def _canny_host(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Host side of `canny`: uint8 RGB (..., H, W, 3) -> uint8 {0, 1} (..., H, W, 1)."""
    images = np.asarray(images)
    flat = images.reshape((-1,) + images.shape[-3:])
    edges = np.empty(flat.shape[:-1] + (1,), np.uint8)
    for i, image in enumerate(flat):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        edges[i, ..., 0] = cv2.Canny(grey, low, high, apertureSize=3, L2gradient=False) // 255
    return edges.reshape(images.shape[:-1] + (1,))


def _batch_axis_to_shard(x: jax.Array) -> str | None:
    """The mesh axis `x`'s batch should be split over for a per-shard callback, if any.

    A mesh set with `jax.set_mesh` that has a `data` axis not already manual (i.e. we are
    not inside a `shard_map` over it) and that divides the batch.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names or DATA_AXIS in mesh.manual_axes:
        return None
    if x.shape[0] % mesh.shape[DATA_AXIS]:
        return None
    return DATA_AXIS


def _per_shard(fn, x: jax.Array) -> jax.Array:
    """Apply `fn` to each batch shard where a device mesh is active, else to the whole batch.

    Under a mesh a bare host callback would gather the whole batch onto one device; wrapping
    it in `shard_map` over the batch axis makes every shard call back on its own host.
    """
    axis = _batch_axis_to_shard(x)
    if axis is None:
        return fn(x)
    spec = PartitionSpec(axis)
    return jax.shard_map(fn, in_specs=spec, out_specs=spec)(x)


def canny(images: jax.Array, low: float = 50.0, high: float = 150.0) -> jax.Array:
    """Canny edges of RGB images, computed by OpenCV on the host.

    `cv2.Canny(cvtColor(uint8(round(255 * clip(x, 0, 1))), RGB2GRAY), low, high,
    apertureSize=3, L2gradient=False)`. Works eagerly and inside jit, vmap and shard_map (one
    host call per shard). Args: images (B, H, W, 3) float in [0, 1]. Returns (B, H, W, 1)
    float32 in {0, 1}, gradient stopped.
    """
    host = functools.partial(_canny_host, low=float(low), high=float(high))

    def call(x: jax.Array) -> jax.Array:
        quantised = to_uint8(x)
        shape = jax.ShapeDtypeStruct(quantised.shape[:-1] + (1,), jnp.uint8)
        return jax.pure_callback(host, shape, quantised, vmap_method="expand_dims")

    edges = _per_shard(call, jax.lax.stop_gradient(images))
    return edges.astype(jnp.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's 1-D Gaussian for float images: size round(8 * sigma + 1) | 1, sums to 1.

    Equals `cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F)` for that size (9 for sigma 1.0,
    15 for 1.6). Returns float64 (ksize,).
    """
    if sigma <= 0:
        raise ValueError(f"DoG sigma must be positive, got {sigma}")
    size = int(math.floor(8.0 * sigma + 1.0 + 0.5)) | 1
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur(grey: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur with BORDER_REFLECT_101 borders, as `cv2.GaussianBlur`.

    Args: grey (B, H, W) float32. Returns (B, H, W) float32.
    """
    kernel = jnp.asarray(gaussian_kernel(sigma), jnp.float32)
    radius = (kernel.shape[0] - 1) // 2
    padded = jnp.pad(grey, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    height, width = grey.shape[1:]
    rows = sum(kernel[i] * padded[:, i:i + height, :] for i in range(kernel.shape[0]))
    return sum(kernel[i] * rows[:, :, i:i + width] for i in range(kernel.shape[0]))


def dog(images: jax.Array, sigmas: tuple[float, float] = (1.0, 1.6)) -> jax.Array:
    """Difference of Gaussians `G(sigmas[0]) - G(sigmas[1])` of the grey image.

    Grey = 0.299 R + 0.587 G + 0.114 B of clip(images, 0, 1), float32. Args: images
    (B, H, W, 3) float in [0, 1]. Returns (B, H, W, 1) float32, about +-0.12 on faces at
    the default sigmas, gradient stopped.
    """
    rgb = jnp.clip(jax.lax.stop_gradient(images).astype(jnp.float32), 0.0, 1.0)
    grey = rgb @ jnp.asarray(GREY_WEIGHTS, jnp.float32)
    fine, coarse = sigmas
    return (gaussian_blur(grey, fine) - gaussian_blur(grey, coarse))[..., None]
