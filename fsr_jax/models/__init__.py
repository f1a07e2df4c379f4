"""The paper's networks as pure Flax (linen) modules, and their builders from a config.

FeedbackSR (TNet, SNet), Downsampler (DeNet, DSNet), LightCNN (every discriminator).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from fsr_jax import edges as edge_ops
from fsr_jax.models.downsampler import Downsampler
from fsr_jax.models.feedback_sr import FeedbackSR
from fsr_jax.models.lightcnn import LightCNN
from fsr_jax.registry import Registry

__all__ = ["Downsampler", "FeedbackSR", "LightCNN", "default_config", "upgrade_config", "build_sr",
           "build_downsampler", "build_discriminator", "DISCRIMINATORS", "DISCRIMINATOR_PAIRS",
           "discriminator_types"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_config() -> ml_collections.ConfigDict:
    """The `model` config section at the paper's sizes (the reference parameter counts hold here)."""
    return ml_collections.ConfigDict(dict(
        # Computation dtype of every network; params are float32 either way.
        dtype="float32",
        # edges: the priors fed to SR iterations 2, 3, ... (names in fsr_jax.edges.PRIORS);
        # every registered prior's config fields follow, at their defaults (canny_thresholds,
        # canny_impl, dog_sigmas: see fsr_jax/edges.py).
        sr=dict(
            features=64, groups=6, iterations=3, scale=4, edges=("canny", "dog"), projection="dense",
            **edge_ops.prior_defaults(),
        ),
        # zero_init_residual: each residual block's last conv starts at zero (Decision).
        # bicubic_skip: the output adds the input's bicubic downscaling (off: the paper's net).
        downsampler=dict(features=64, blocks=16, zero_init_residual=True, bicubic_skip=False),
        # type: the discriminator of every GAN pair, a name in DISCRIMINATORS (the paper's LightCNN);
        # pair_types: per-pair exceptions, e.g. "d_lr=other,d_ds=other" (pairs: d_lr, d_t, d_s, d_ds).
        # zero_init_logit: the logit layer starts at zero, D = 0.5 everywhere (Decision).
        discriminator=dict(type="lightcnn", pair_types="", width=1.0, zero_init_logit=True),
    ))


def _no_spectral_norm(disc) -> None:
    """Refuse `discriminator.spectral_norm: true` (runs saved before it was removed hold the field)."""
    if disc.get("spectral_norm", False):
        raise ValueError("model.discriminator.spectral_norm is no longer supported (the training step "
                         "carried no batch_stats, so it could not run); set it false or remove it")


def upgrade_config(cfg) -> ml_collections.ConfigDict:
    """A copy of a `model` section (ConfigDict or dict, e.g. from a saved config.json) in today's
    field names, for comparing it with a current config: `sr.steps` (the name before
    `sr.iterations`) renamed, `discriminator.spectral_norm: false` dropped (true is refused),
    fields added since at the value that builds the network those runs trained
    (`downsampler.bicubic_skip` false, `discriminator.type` lightcnn, no `pair_types`). The builders accept the old fields themselves."""
    plain = copy.deepcopy(cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg))
    sr, disc, down = plain.get("sr"), plain.get("discriminator"), plain.get("downsampler")
    if isinstance(down, dict):
        down.setdefault("bicubic_skip", False)
    if isinstance(sr, dict) and "steps" in sr:
        steps = sr.pop("steps")
        sr.setdefault("iterations", steps)
    if isinstance(disc, dict) and "spectral_norm" in disc:
        _no_spectral_norm(disc)
        del disc["spectral_norm"]
    if isinstance(disc, dict):
        disc.setdefault("type", "lightcnn")
        disc.setdefault("pair_types", "")
    return ml_collections.ConfigDict(plain)


def _dtype(cfg: ml_collections.ConfigDict):
    if cfg.dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
    return DTYPES[cfg.dtype]


def build_sr(cfg: ml_collections.ConfigDict) -> FeedbackSR:
    """FeedbackSR (TNet or SNet) from the `model` config section."""
    sr = cfg.sr
    # Runs saved before the rename to `iterations` hold the count as `sr.steps`.
    iterations = sr.iterations if "iterations" in sr else sr.steps
    # A prior field missing from a run saved before it existed (canny_impl) takes its default:
    # the same maths.
    fields = {name: sr.get(name, default) for name, default in edge_ops.prior_defaults().items()}
    return FeedbackSR(
        features=sr.features, groups=sr.groups, iterations=iterations, scale=sr.scale,
        edges=tuple(sr.edges), prior_fields=fields, projection=sr.projection, dtype=_dtype(cfg),
    )


def build_downsampler(cfg: ml_collections.ConfigDict) -> Downsampler:
    """Downsampler (DeNet or DSNet) from the `model` config section."""
    down = cfg.downsampler
    return Downsampler(down.features, down.blocks, _dtype(cfg), down.get("zero_init_residual", True),
                       down.get("bicubic_skip", False))


#: Discriminator builders by type name (`model.discriminator.type`): (the `model.discriminator`
#: section, the computation dtype) -> a module mapping (N, H, W, 3) images to (N,) logits.
DISCRIMINATORS: Registry[Callable[[ml_collections.ConfigDict, Any], nn.Module]] = Registry("discriminator type")
DISCRIMINATORS.register("lightcnn", lambda disc, dtype: LightCNN(disc.width, dtype, disc.get("zero_init_logit", True)))

#: The GAN pairs' discriminators: D_LR (stage 1, 16x16), D_T and D_S (64x64), D_DS (16x16).
DISCRIMINATOR_PAIRS = ("d_lr", "d_t", "d_s", "d_ds")


def discriminator_types(disc: ml_collections.ConfigDict) -> dict[str, str]:
    """{pair: type name} of every GAN pair: `type`, except the pairs `pair_types` names
    ("d_lr=other,..."); ValueError naming a malformed entry, an unknown pair or type."""
    types = dict.fromkeys(DISCRIMINATOR_PAIRS, disc.get("type", "lightcnn"))
    for entry in filter(None, (e.strip() for e in disc.get("pair_types", "").split(","))):
        pair, _, name = (part.strip() for part in entry.partition("="))
        if pair not in types or not name:
            raise ValueError(f"model.discriminator.pair_types entry {entry!r} is not <pair>=<type> with a pair "
                             f"of {list(DISCRIMINATOR_PAIRS)}")
        types[pair] = name
    unknown = sorted({name for name in types.values() if name not in DISCRIMINATORS})
    if unknown:
        raise ValueError(f"model.discriminator types {unknown} are not registered; the types are "
                         f"{list(DISCRIMINATORS)}")
    return types


def build_discriminator(cfg: ml_collections.ConfigDict, pair: str = "d_t") -> nn.Module:
    """The discriminator of GAN pair `pair` (`discriminator_types`) from the `model` config section."""
    disc = cfg.discriminator
    _no_spectral_norm(disc)
    return DISCRIMINATORS[discriminator_types(disc)[pair]](disc, _dtype(cfg))
