"""How a set of low-resolution faces looks, in numbers: what tells a degradation model's LR
faces apart from real ones (colour, sharpness, noise, range).

Every statistic reads faces on the 8-bit scale, (N, h, w, 3) with values in [0, 255] (uint8, or
float for a network's unrounded output), and grey as 0.299 R + 0.587 G + 0.114 B. Needs numpy only.
"""
from __future__ import annotations

import math

import numpy as np

GREY_WEIGHTS = (0.299, 0.587, 0.114)
#: Immerkaer's noise mask: the difference of two Laplacians, which cancels image structure up to
#: second order and keeps (36 x the variance of) white noise.
NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def grey(faces: np.ndarray) -> np.ndarray:
    """float64 (N, h, w) grey levels of (N, h, w, 3) RGB faces on the 8-bit scale."""
    return np.asarray(faces, np.float64) @ np.asarray(GREY_WEIGHTS)


def _reflect101(images: np.ndarray) -> np.ndarray:
    """(N, h, w) padded by one pixel, mirrored without repeating the edge (OpenCV's default border)."""
    return np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="reflect")


def laplacian_variance(faces: np.ndarray) -> np.ndarray:
    """(N,) sharpness: the variance over each face of the 4-neighbour Laplacian of its grey
    image (reflect-101 borders; `cv2.Laplacian(grey, CV_64F, ksize=1).var()`). Blur lowers it,
    noise and ringing raise it."""
    padded = _reflect101(grey(faces))
    lap = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
           - 4.0 * padded[:, 1:-1, 1:-1])
    return lap.reshape(len(lap), -1).var(axis=1)


def noise_sigma(faces: np.ndarray) -> np.ndarray:
    """(N,) noise estimate: Immerkaer's (1996) standard deviation of additive white noise,
    sqrt(pi / 2) / (6 (h - 2) (w - 2)) x sum |grey * NOISE_MASK| over the interior pixels, on
    the 8-bit scale. Smooth faces give about 0-2, bicubic-downscaled photos about 8."""
    g = grey(faces)
    n, h, w = g.shape
    if h < 3 or w < 3:
        raise ValueError(f"noise_sigma needs faces of at least 3x3 pixels, got {h}x{w}")
    response = sum(NOISE_MASK[i, j] * g[:, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    return math.sqrt(math.pi / 2.0) * np.abs(response).sum(axis=(1, 2)) / (6.0 * (h - 2) * (w - 2))


def set_statistics(faces: np.ndarray) -> dict:
    """Statistics of a set of faces (N, h, w, 3) on the 8-bit scale, unrounded values allowed.

    Returns {"n", "mean_rgb" (per channel, over every pixel), "std_rgb" (the same),
    "laplacian_variance" and "noise_sigma" (means over faces, of the faces clipped to [0, 255]
    and rounded, as they would be saved), "outside_share" (share of values outside [0, 255]
    before clipping)}.
    """
    faces = np.asarray(faces, np.float64)
    if faces.ndim != 4 or faces.shape[-1] != 3 or not len(faces):
        raise ValueError(f"expected (N, h, w, 3) faces with N > 0, got shape {faces.shape}")
    saved = np.round(np.clip(faces, 0.0, 255.0))
    pixels = saved.reshape(-1, 3)
    return {"n": len(faces), "mean_rgb": pixels.mean(axis=0).tolist(), "std_rgb": pixels.std(axis=0).tolist(),
            "laplacian_variance": float(laplacian_variance(saved).mean()),
            "noise_sigma": float(noise_sigma(saved).mean()),
            "outside_share": float(np.mean((faces < 0.0) | (faces > 255.0)))}


def _log_ratios(stats: dict, real: dict) -> dict[str, float]:
    """|log(stat / real stat)| per statistic (colour means and stds per channel averaged)."""

    def ratio(a, b):
        return abs(math.log(max(a, 1e-6) / max(b, 1e-6)))

    return {"colour": float(np.mean([ratio(a, b) for a, b in zip(stats["mean_rgb"], real["mean_rgb"])])),
            "contrast": float(np.mean([ratio(a, b) for a, b in zip(stats["std_rgb"], real["std_rgb"])])),
            "sharpness": ratio(stats["laplacian_variance"], real["laplacian_variance"]),
            "noise": ratio(stats["noise_sigma"], real["noise_sigma"])}


def realism_gap(stats: dict, real: dict) -> float:
    """How far a set's statistics are from real LR's, 0 for the same: the sum of the absolute
    log ratios of the channel means and stds (averaged over channels), the Laplacian variance
    and the noise, plus the share of values outside [0, 255]. Unitless, so that a colour cast,
    blur and speckle count alike; used to rank degradation models (lower is more realistic)."""
    return float(sum(_log_ratios(stats, real).values()) + stats["outside_share"])


def flaws(stats: dict, baseline: dict, real: dict, colour_levels: float = 4.0, tolerance: float = 0.1,
          outside_limit: float = 0.01) -> list[str]:
    """What makes `stats` (a degradation model's LR) less like `real` than `baseline` (bicubic
    LR) is, one phrase each: 'speckle' or 'too smooth' (noise further from real than the
    baseline's), 'oversharpening' or 'blur' (sharpness further from real), each by more than
    `tolerance` in absolute log ratio (0.1: about 10 %); 'colour shift' (a channel mean more
    than `colour_levels` further from real than the baseline's); 'out of range' (over
    `outside_limit` of the values outside [0, 255]). [] when none."""
    mine, base = _log_ratios(stats, real), _log_ratios(baseline, real)
    found = []
    if mine["noise"] > base["noise"] + tolerance:
        found.append("speckle" if stats["noise_sigma"] > real["noise_sigma"] else "too smooth")
    if mine["sharpness"] > base["sharpness"] + tolerance:
        found.append("oversharpening" if stats["laplacian_variance"] > real["laplacian_variance"] else "blur")
    shift = [abs(a - r) - abs(b - r) for a, b, r in zip(stats["mean_rgb"], baseline["mean_rgb"], real["mean_rgb"])]
    if max(shift) > colour_levels:
        found.append("colour shift")
    if stats["outside_share"] > outside_limit:
        found.append("out of range")
    return found
