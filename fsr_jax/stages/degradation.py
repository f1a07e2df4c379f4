"""Stage 1: DeNet learns to turn HR faces into realistic LR ones, against D_LR on real LR faces.

L_DeNet = content * |DeNet(HR) - bicubic(HR)|_1 + adversarial * L_adv(D_LR) (the paper's eq. 2-4).
"""
from __future__ import annotations

import dataclasses

import jax
import ml_collections

from fsr_jax import losses as loss_fns
from fsr_jax import observe
from fsr_jax.stages import Preview, Stage, Step, StepSpec
from fsr_jax.steps import Metrics, NetState, discriminator_update, generator_update


@dataclasses.dataclass(frozen=True)
class Losses:
    """The `stage1` section's loss settings: weights alpha_1, beta_1 and the GAN loss."""

    content_weight: float
    adversarial_weight: float
    gan_loss: str


def denet_pair_update(spec: StepSpec, nets: dict[str, NetState], hr: jax.Array, lr_real: jax.Array,
                      tx) -> tuple[dict[str, NetState], Metrics]:
    """DeNet and D_LR, one Adam step each: hr (B, S, S, 3), lr_real (B, s, s, 3) in [0, 1].

    Returns ({'denet', 'd_lr'} updated, {'denet/content', 'denet/adv', 'd_lr/loss'})."""
    w, down, disc = spec.losses, spec.nets.down, spec.nets.disc
    d_lr = nets["d_lr"].params

    def denet_loss(params):
        fake = down.apply({"params": params}, hr)
        content = loss_fns.l1(fake, loss_fns.bicubic_down(hr, spec.scale))
        adv = loss_fns.generator_adversarial(disc.apply({"params": d_lr}, fake), w.gan_loss)
        total = w.content_weight * content + w.adversarial_weight * adv
        return total, (fake, {"denet/content": content, "denet/adv": adv})

    denet, (fake, metrics) = generator_update(nets["denet"], denet_loss, tx)
    disc_state, metrics["d_lr/loss"] = discriminator_update(nets["d_lr"], disc, lr_real, fake, w.gan_loss, tx)
    return {"denet": denet, "d_lr": disc_state}, metrics


class Degradation(Stage):
    name = "degradation"
    section = "stage1"

    def losses(self, section: ml_collections.ConfigDict) -> Losses:
        return Losses(float(section.content_weight), float(section.adversarial_weight), section.gan_loss)

    def networks(self, spec: StepSpec):
        return {"denet": (spec.nets.down, "hr"), "d_lr": (spec.nets.disc, "lr")}

    def step(self, spec: StepSpec, tx) -> Step:
        def step(state, batch):
            nets, metrics = denet_pair_update(spec, state.nets, batch["hr"], batch["lr"], tx)
            return state.replace(step=state.step + 1, nets=nets), metrics

        return step

    def preview(self, spec: StepSpec) -> Preview:
        """One grid: HR | bicubic LR | DeNet LR | a real LR."""

        def panel(images):
            return observe.to_panel(images, spec.hr_size, "rgb")

        def preview(state, batch):
            hr, lr = batch["hr"][:spec.summary_images], batch["lr"][:spec.summary_images]
            fake = spec.nets.down.apply({"params": state.nets["denet"].params}, hr)
            return {"denet": [panel(hr), panel(loss_fns.bicubic_down(hr, spec.scale)), panel(fake), panel(lr)]}

        return preview


STAGE = Degradation()
