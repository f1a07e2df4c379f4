"""The paper's networks as pure Flax (linen) modules, and their builders from a config.

FeedbackSR (TNet, SNet), Downsampler (DeNet, DSNet), LightCNN (every discriminator).
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from fsr_jax.models.downsampler import Downsampler
from fsr_jax.models.feedback_sr import FeedbackSR
from fsr_jax.models.lightcnn import LightCNN

__all__ = ["Downsampler", "FeedbackSR", "LightCNN", "default_config", "build_sr",
           "build_downsampler", "build_discriminator"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_config() -> ml_collections.ConfigDict:
    """The `model` config section at the paper's sizes (the reference parameter counts hold here)."""
    return ml_collections.ConfigDict(dict(
        # Computation dtype of every network; params are float32 either way.
        dtype="float32",
        sr=dict(
            features=64, groups=6, steps=3, scale=4, edges=("canny", "dog"),
            canny_thresholds=(50.0, 150.0), dog_sigmas=(1.0, 1.6), projection="dense",
            # 'jax': Canny on the device, pixel-equal to cv2.Canny (fast, allows several
            # steps per call); 'opencv': cv2.Canny through a host callback (the reference).
            canny_impl="jax",
        ),
        # zero_init_residual: each residual block's last conv starts at zero (Decision).
        downsampler=dict(features=64, blocks=16, zero_init_residual=True),
        # zero_init_logit: the logit layer starts at zero, D = 0.5 everywhere (Decision).
        discriminator=dict(width=1.0, spectral_norm=False, zero_init_logit=True),
    ))


def _dtype(cfg: ml_collections.ConfigDict):
    if cfg.dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
    return DTYPES[cfg.dtype]


def build_sr(cfg: ml_collections.ConfigDict) -> FeedbackSR:
    """FeedbackSR (TNet or SNet) from the `model` config section."""
    sr = cfg.sr
    return FeedbackSR(
        features=sr.features, groups=sr.groups, steps=sr.steps, scale=sr.scale,
        edges=tuple(sr.edges), canny_thresholds=tuple(sr.canny_thresholds),
        canny_impl=sr.get("canny_impl", "jax"),  # runs saved before the field existed: equal maths
        dog_sigmas=tuple(sr.dog_sigmas), projection=sr.projection, dtype=_dtype(cfg),
    )


def build_downsampler(cfg: ml_collections.ConfigDict) -> Downsampler:
    """Downsampler (DeNet or DSNet) from the `model` config section."""
    down = cfg.downsampler
    return Downsampler(down.features, down.blocks, _dtype(cfg), down.get("zero_init_residual", True))


def build_discriminator(cfg: ml_collections.ConfigDict) -> LightCNN:
    """LightCNN discriminator (for 64x64 or 16x16 inputs) from the `model` config section."""
    disc = cfg.discriminator
    return LightCNN(disc.width, disc.spectral_norm, _dtype(cfg), disc.get("zero_init_logit", True))
