"""Stage 1: DeNet learns to turn HR faces into realistic LR ones, against D_LR on real LR faces.

L_DeNet = content * |DeNet(HR) - bicubic(HR)|_1 + adversarial * L_adv(D_LR) (the paper's eq. 2-4).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from fsr_jax import losses as loss_fns
from fsr_jax.models import layers
from fsr_jax import grids
from fsr_jax.stages import Preview, Stage, Step, StepSpec
from fsr_jax.steps import Metrics, NetState, discriminator_update, generator_update


@dataclasses.dataclass(frozen=True)
class Settings:
    """The `degradation` section's loss settings: weights alpha_1, beta_1, the GAN loss, whether D_LR
    sees DeNet's output clipped to [0, 1], and D_LR's learning rate relative to DeNet's."""

    content_weight: float
    adversarial_weight: float
    gan_loss: str
    clip_for_discriminator: bool
    discriminator_lr_scale: float


def denet_pair_update(spec: StepSpec, nets: dict[str, NetState], hr: jax.Array, lr_real: jax.Array,
                      tx) -> tuple[dict[str, NetState], Metrics]:
    """DeNet and D_LR, one Adam step each: hr (B, S, S, 3), lr_real (B, s, s, 3) in [0, 1].

    Returns ({'denet', 'd_lr'} updated, {'denet/content', 'denet/adv', 'd_lr/loss'})."""
    w, down, disc = spec.settings, spec.modules.down, spec.modules.disc("d_lr")
    d_lr = nets["d_lr"].params

    def denet_loss(params):
        fake = down.apply({"params": params}, hr)
        content = loss_fns.l1(fake, layers.bicubic_downsample(hr, spec.scale))
        seen = jnp.clip(fake, 0.0, 1.0) if w.clip_for_discriminator else fake
        adv = loss_fns.generator_adversarial(disc.apply({"params": d_lr}, seen), w.gan_loss)
        total = w.content_weight * content + w.adversarial_weight * adv
        return total, (seen, {"denet/content": content, "denet/adv": adv})

    denet, (seen, metrics) = generator_update(nets["denet"], denet_loss, tx)
    disc_state, metrics["d_lr/loss"] = discriminator_update(nets["d_lr"], disc, lr_real, seen, w.gan_loss, tx,
                                                            w.discriminator_lr_scale)
    return {"denet": denet, "d_lr": disc_state}, metrics


class Degradation(Stage):
    name = "degradation"
    term_meanings = {**Stage.term_meanings,
                     "content": "mean |DeNet(HR) - bicubic(HR)| per pixel value, images in [0, 1]"}

    def settings(self, section: ml_collections.ConfigDict) -> Settings:
        return Settings(float(section.content_weight), float(section.adversarial_weight), section.gan_loss,
                      bool(section.clip_for_discriminator), float(section.discriminator_lr_scale))

    def problems(self, config: ml_collections.ConfigDict, workdir) -> list[str]:
        scale = config[self.name].discriminator_lr_scale
        return [] if scale > 0 else [f"{self.name}.discriminator_lr_scale must be positive, got {scale}"]

    def networks(self, spec: StepSpec):
        return {"denet": (spec.modules.down, "hr"), "d_lr": (spec.modules.disc("d_lr"), "lr")}

    def step(self, spec: StepSpec, tx) -> Step:
        def step(state, batch):
            nets, metrics = denet_pair_update(spec, state.nets, batch["hr"], batch["lr"], tx)
            return state.replace(step=state.step + 1, nets=nets), metrics

        return step

    def preview(self, spec: StepSpec) -> Preview:
        """One grid: HR | bicubic LR | DeNet LR | a real LR."""

        def panel(images):
            return grids.to_panel(images, spec.hr_size, "rgb")

        def preview(state, batch):
            hr, lr = batch["hr"][:spec.summary_images], batch["lr"][:spec.summary_images]
            fake = spec.modules.down.apply({"params": state.nets["denet"].params}, hr)
            return {"denet": [panel(hr), panel(layers.bicubic_downsample(hr, spec.scale)), panel(fake), panel(lr)]}

        return preview

    def grid_titles(self, spec: StepSpec) -> dict[str, list[str]]:
        return {"denet": ["HR", "bicubic LR", "DeNet LR", "real LR"]}


STAGE = Degradation()
