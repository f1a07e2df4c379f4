"""NIQE (Mittal et al. 2013) as BasicSR computes it, in numpy/scipy, with its pristine model.

The image becomes BasicSR's Y channel (MATLAB's BT.601 `rgb2ycbcr`), rounded, with no border
crop. At two scales (the second a MATLAB-style antialiased bicubic half), the
mean-subtracted contrast-normalised coefficients of each block give 18 features: an
asymmetric generalised Gaussian fit of the coefficients and of their products with four
neighbours. The 36-d block features are summarised by a Gaussian and compared with the
pristine one by a Mahalanobis-like distance.
**Decision**: NIQE's 96-pixel blocks find no block in a 64x64 face, so the block size is
a parameter, 32 by default; report it beside every NIQE number.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from fsr_jax.metrics import weights

BLOCK_SIZE = 32
# BT.601 luma weights for RGB in [0, 1] -> Y in [16, 235] (MATLAB rgb2ycbcr, as BasicSR uses).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def niqe_params() -> dict[str, np.ndarray]:
    """mu_pris_param (1, 36), cov_pris_param (36, 36), gaussian_window (7, 7) (metric cache, fetched on first use)."""
    return weights.load_weights(weights.NIQE_FILE)


def y_channel(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) float32 Y in [16, 235], rounded to integers."""
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one (H, W, 3) RGB image, got shape {image.shape}")
    y = ((image @ _Y_WEIGHTS + 16.0) / 255.0).astype(np.float32)  # float64 product, as BasicSR
    return np.round(y * np.float32(255.0))


@functools.lru_cache(maxsize=None)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """The shape grid 0.2:0.001:10 and the ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on it."""
    shapes = np.arange(0.2, 10.001, 0.001)
    return shapes, gamma(2.0 / shapes) ** 2 / (gamma(1.0 / shapes) * gamma(3.0 / shapes))


def _aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching fit of an asymmetric generalised Gaussian: (shape, left scale, right scale).

    The shape is the grid value whose moment ratio is nearest the sample's; a side with no
    samples gives NaN, which the caller's NaN-aware statistics drop.
    """
    values = values.ravel()
    shapes, ratios = _aggd_table()
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.mean(values[values < 0] ** 2)) if np.any(values < 0) else np.nan
        right = np.sqrt(np.mean(values[values > 0] ** 2)) if np.any(values > 0) else np.nan
        g = left / right
        r = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
        r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = shapes[np.argmin((ratios - r_norm) ** 2)]
    spread = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left * spread, right * spread


def block_features(block: np.ndarray) -> list[float]:
    """(h, w) normalised coefficients -> 18 features: [shape, mean scale] of the coefficients,
    then [shape, mean, left scale, right scale] of their products with each of four
    (cyclically shifted) neighbours."""
    alpha, left, right = _aggd_fit(block)
    features = [alpha, (left + right) / 2]
    for shift in _NEIGHBOUR_SHIFTS:
        alpha, left, right = _aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma(2.0 / alpha) / gamma(1.0 / alpha)
        features += [alpha, mean, left, right]
    return features


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    near = (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)
    far = (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))
    return near + far


def _half_matrix(n: int) -> np.ndarray:
    """(ceil(n/2), n) weights of MATLAB's antialiased bicubic imresize by 0.5, mirrored borders."""
    scale, width = 0.5, 4.0 / 0.5
    out = math.ceil(n * scale)
    centres = np.arange(1, out + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    taps = int(math.ceil(width)) + 2
    first = np.floor(centres - width / 2)
    index = first[:, None] + np.arange(taps)[None, :]
    w = scale * _cubic((centres[:, None] - index) * scale)
    w /= w.sum(axis=1, keepdims=True)
    index = index.astype(int) - 1  # 0-based; mirror (edge pixel repeated) outside [0, n)
    index = np.where(index < 0, -index - 1, index)
    index = np.where(index >= n, 2 * n - 1 - index, index)
    matrix = np.zeros((out, n))
    np.add.at(matrix, (np.repeat(np.arange(out), taps), index.ravel()), w.ravel())
    return matrix


def _half_size(image: np.ndarray) -> np.ndarray:
    """(H, W) -> (ceil(H/2), ceil(W/2)) float32, MATLAB imresize(image, 0.5) (bicubic, antialiased)."""
    return (_half_matrix(image.shape[0]) @ image @ _half_matrix(image.shape[1]).T).astype(np.float32)


def niqe_of_y(y: np.ndarray, block_size: int = BLOCK_SIZE, params: dict | None = None) -> float:
    """NIQE of a (H, W) luma image in [0, 255] holding at least two blocks; lower is more natural.

    NaN when fewer than two blocks give finite features (e.g. a flat image), where BasicSR fails.
    """
    params = niqe_params() if params is None else params
    window = params["gaussian_window"]
    rows, cols = y.shape[0] // block_size, y.shape[1] // block_size
    if rows * cols < 2:
        raise ValueError(f"NIQE needs at least two {block_size}x{block_size} blocks; the image is {y.shape}")
    image = np.asarray(y, np.float32)[:rows * block_size, :cols * block_size]
    per_scale = []
    for scale in (1, 2):
        mu = convolve(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(image * image, window, mode="nearest") - mu * mu))
        coefficients = (image - mu) / (sigma + 1)
        edges = [k * block_size // scale for k in range(max(rows, cols) + 1)]
        per_scale.append(np.array([
            block_features(coefficients[edges[i]:edges[i + 1], edges[j]:edges[j + 1]])
            for i in range(rows) for j in range(cols)]))
        image = _half_size(image / np.float32(255.0)) * np.float32(255.0)
    features = np.concatenate(per_scale, axis=1)
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:  # flat blocks: too few blocks with both signs to fit a covariance
        return float("nan")
    mu_image = np.nanmean(features, axis=0)
    cov_image = np.cov(complete, rowvar=False)
    diff = params["mu_pris_param"].ravel() - mu_image
    distance = diff @ np.linalg.pinv((params["cov_pris_param"] + cov_image) / 2) @ diff
    return float(np.sqrt(distance))


def niqe(image: np.ndarray, block_size: int = BLOCK_SIZE, params: dict | None = None) -> float:
    """NIQE of one (H, W, 3) RGB image in [0, 1], on its rounded Y channel, no border crop.

    block_size: the side of the square blocks the features are pooled over (BasicSR: 96;
    here 32, see the module's Decision). `params` defaults to the cached pristine model.
    """
    return niqe_of_y(y_channel(image), block_size, params)
