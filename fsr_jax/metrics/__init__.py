"""The paper's metrics with real weights, in JAX/numpy (no torch, no TensorFlow at run time).

- `psnr(x, y)`, `ssim(x, y)`: (N, H, W, 3) in [0, 1] pairs -> (N,), on RGB at data range 255.
- `lpips(x, y)`: (N, H, W, 3) in [0, 1] pairs -> (N,), AlexNet with the v0.1 linear layers.
- `inception_features(images)` -> (N, 2048); `fid(features, reference_features)` -> FIDResult
  (value, n, n_ref).
- `niqe(image, block_size=32)`: one (H, W, 3) image in [0, 1] -> float.
- `REGISTRY` ({name: `Metric`}), `register`, `unregister` (`fsr_jax.metrics.registry`): the
  metrics evaluation scores and its tables show, with their direction, digits and needs.

Weights are fetched into a cache on first use (`python -m fsr_jax.metrics.weights install`
fetches them all ahead of time); where that fails, a metric raises `MissingWeightsError` naming
that command.
"""
from fsr_jax.metrics.frechet import FIDResult, feature_stats, fid, frechet_distance, inception_features
from fsr_jax.metrics.perceptual import lpips
from fsr_jax.metrics.naturalness import BLOCK_SIZE as NIQE_BLOCK_SIZE
from fsr_jax.metrics.naturalness import niqe
from fsr_jax.metrics.quality import psnr, ssim
from fsr_jax.metrics.registry import REGISTRY, Metric, register, unregister
from fsr_jax.metrics.weights import INSTALL_COMMAND, MissingWeightsError

__all__ = [
    "FIDResult", "INSTALL_COMMAND", "Metric", "MissingWeightsError", "NIQE_BLOCK_SIZE", "REGISTRY",
    "feature_stats", "fid", "frechet_distance", "inception_features", "lpips", "niqe", "psnr", "register",
    "ssim", "unregister",
]
