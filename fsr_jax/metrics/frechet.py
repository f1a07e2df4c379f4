"""FID: Inception pool3 features over an image set, their Gaussian statistics, the Frechet distance.

`inception_features` runs the Flax InceptionV3 (weights from the metric cache) in fixed-size
jitted batches; `fid` compares two feature sets and returns the distance with both set sizes,
since an FID means little without its N (eval prints N beside every FID).
**Decision**: a real-LR test set, which has no HR, is scored against the HR training set.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fsr_jax.metrics import inception, weights
from fsr_jax.metrics.inception import FEATURES, InceptionV3, preprocess

EPS = 1e-6


def inception_params() -> dict:
    """The converted TF-Inception parameter tree, fetched into the metric cache on first use."""
    return weights.load_params(weights.INCEPTION_FILE, inception.abstract_params)


@jax.jit
def _features(params: dict, images: jax.Array) -> jax.Array:
    return InceptionV3().apply({"params": params}, preprocess(images))


def inception_features(images: np.ndarray, params: dict | None = None, batch_size: int = 50) -> np.ndarray:
    """(N, H, W, 3) RGB in [0, 1] -> (N, 2048) float32 pool3 features.

    Images of any size are resized to 299x299 (bilinear, see `inception.preprocess`). Batches have
    a fixed size (the last one padded), so one compilation serves a whole set. `params` defaults
    to the cached weights.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {images.shape}")
    params = inception_params() if params is None else params
    n = len(images)
    out = np.empty((n, FEATURES), np.float32)
    for start in range(0, n, batch_size):
        batch = images[start:start + batch_size]
        count = len(batch)
        if count < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - count, *batch.shape[1:]), np.float32)])
        out[start:start + count] = np.asarray(_features(params, jnp.asarray(batch)))[:count]
    return out


class FeatureStats(NamedTuple):
    """Mean (D,) and sample covariance (D, D) of N feature vectors, float64."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def feature_stats(features: np.ndarray) -> FeatureStats:
    """(N, D) features -> their mean and covariance (np.cov, N - 1 normalisation, as pytorch-fid)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {features.shape}")
    return FeatureStats(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = EPS) -> float:
    """|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), by eigenvalues.

    tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of the symmetric
    S_a^(1/2) S_b S_a^(1/2), which has the same spectrum as S_a S_b. When a covariance is
    singular (N <= D, as with fewer than 2049 faces), eps * I is added to both inside that
    root, as pytorch-fid does; the traces stay those of the covariances themselves.
    """
    dim = len(a.mu)
    sa, sb = a.sigma, b.sigma
    if min(a.n, b.n) <= dim:
        sa, sb = sa + eps * np.eye(dim), sb + eps * np.eye(dim)
    root_a = _psd_sqrt(sa)
    product = root_a @ sb @ root_a
    spectrum = np.linalg.eigvalsh((product + product.T) / 2)
    trace_root = np.sqrt(np.clip(spectrum, 0.0, None)).sum()
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_root)


class FIDResult(NamedTuple):
    """An FID value with the sizes of the evaluated set (n) and of the reference set (n_ref)."""

    value: float
    n: int
    n_ref: int


def fid(features: np.ndarray, reference_features: np.ndarray, eps: float = EPS) -> FIDResult:
    """FID between an evaluated set's (N, 2048) features and a reference set's (M, 2048) ones."""
    a, b = feature_stats(features), feature_stats(reference_features)
    return FIDResult(frechet_distance(a, b, eps), a.n, b.n)
