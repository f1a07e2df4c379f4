"""The real-world-like degradation that makes LR faces from HR ones (not bicubic).

y = JPEG((x * k)_{down s} + c + n): Gaussian blur, decimation with a random phase (no
antialiasing), a per-channel colour shift, Gaussian noise, 8-bit rounding and JPEG compression,
each step a function here; `sample_degradation` draws one set of parameters from the ranges of
a `DegradationConfig` and `degrade` applies them. The synthetic default set's "real" LR faces
are made with it (`fsr_jax.data.synthetic.lr_face`), so the gap between bicubic pairs and real
LR that the paper is about exists in the default set too.
"""
from __future__ import annotations

import dataclasses
import io
import math

import cv2
import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class DegradationConfig:
    """Ranges from which each LR face's degradation is drawn uniformly.

    **Decision**: the classical real-world model y = JPEG((x * k)_{down s} + c + n), with
    ranges chosen so that the LR faces look like WIDER FACE crops (soft, noisy, blocky,
    off-colour) rather than bicubic reductions.

    Attributes:
      blur_sigma: Gaussian blur sigma in HR pixels.
      noise_sigma: Gaussian noise standard deviation, in grey levels of 255.
      jpeg_quality: JPEG quality (PIL, 4:2:0 chroma subsampling).
      colour_gain: per-channel gains are drawn from 1 +- this.
      colour_offset: per-channel offsets are drawn from +- this (in [0, 1] units).
    """

    blur_sigma: tuple[float, float] = (0.8, 2.2)
    noise_sigma: tuple[float, float] = (2.0, 10.0)
    jpeg_quality: tuple[int, int] = (35, 85)
    colour_gain: float = 0.1
    colour_offset: float = 0.04


@dataclasses.dataclass(frozen=True)
class DegradationParams:
    """One draw of the degradation (see `DegradationConfig` for units)."""

    blur_sigma: float
    phase: tuple[int, int]
    gains: tuple[float, float, float]
    offsets: tuple[float, float, float]
    noise_sigma: float
    jpeg_quality: int


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """float32 (H, W, 3) blurred by a Gaussian of `sigma` pixels (OpenCV, reflect-101 borders)."""
    ksize = 2 * int(math.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(image.astype(np.float32), (ksize, ksize), sigma,
                            borderType=cv2.BORDER_REFLECT_101)


def decimate(image: np.ndarray, factor: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(H/factor, W/factor, C): every `factor`-th pixel starting at `phase` (no antialiasing)."""
    dy, dx = phase
    return image[dy::factor, dx::factor]


def colour_shift(image: np.ndarray, gains, offsets) -> np.ndarray:
    """float32 image * gains + offsets per channel (values in [0, 1] units, not clipped)."""
    return image * np.asarray(gains, np.float32) + np.asarray(offsets, np.float32)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """float32 image plus i.i.d. Gaussian noise of std `sigma` grey levels (of 255)."""
    return image + rng.normal(0.0, sigma / 255.0, image.shape).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 of a float image in [0, 1] (clipped, rounded)."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 (H, W, 3) after a PIL JPEG round trip at `quality`."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buf).convert("RGB"))


def sample_degradation(rng: np.random.Generator, cfg: DegradationConfig,
                       factor: int) -> DegradationParams:
    """Draws one `DegradationParams` from the ranges of `cfg`."""
    return DegradationParams(
        blur_sigma=float(rng.uniform(*cfg.blur_sigma)),
        phase=(int(rng.integers(factor)), int(rng.integers(factor))),
        gains=tuple(float(g) for g in 1.0 + rng.uniform(-cfg.colour_gain, cfg.colour_gain, 3)),
        offsets=tuple(float(o) for o in rng.uniform(-cfg.colour_offset, cfg.colour_offset, 3)),
        noise_sigma=float(rng.uniform(*cfg.noise_sigma)),
        jpeg_quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)),
    )


def degrade(hr: np.ndarray, params: DegradationParams, factor: int,
            rng: np.random.Generator) -> np.ndarray:
    """uint8 (H/factor, W/factor, 3) real-world-like LR of a uint8 (H, W, 3) HR face.

    blur -> decimate -> colour shift -> noise -> 8-bit -> JPEG; `rng` draws the noise.
    """
    x = gaussian_blur(hr.astype(np.float32) / 255.0, params.blur_sigma)
    x = decimate(x, factor, params.phase)
    x = colour_shift(x, params.gains, params.offsets)
    x = add_noise(x, params.noise_sigma, rng)
    return jpeg(to_uint8(x), params.jpeg_quality)
