"""Train states and the jitted step of each stage, composed from one update per GAN pair.

Every pair's generator update and its discriminator update (on the pre-update fakes) read the
same pre-step parameters, so a stage's step is one pure function (state, batch) -> (state,
metrics), jitted once and data-parallel over the device mesh: losses are means over the
global batch, so XLA sums the gradients over devices and the result does not depend on how
many devices share the batch.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from fsr_jax import losses, models

#: The names of the stages, also their folders in the workdir.
STAGE1, STAGE2 = "degradation", "teacher_student"

Metrics = dict[str, jax.Array]


@struct.dataclass
class NetState:
    """One network's parameters and its Adam state."""

    params: Any
    opt_state: Any


@struct.dataclass
class TrainState:
    """Everything a stage's checkpoint holds but the data iterator.

    step: int32 scalar; rng: uint32 key data of the stage's seed key; nets: trainable
    networks by name; frozen: parameters used but not trained (DeNet in stage 2).
    """

    step: jax.Array
    rng: jax.Array
    nets: dict[str, NetState]
    frozen: dict[str, Any]


def make_optimizer(opt_cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam with the learning rate halved every `halve_every_epochs` epochs (staircase)."""
    return optax.adam(learning_rate_schedule(opt_cfg, steps_per_epoch), opt_cfg.b1, opt_cfg.b2)


def learning_rate_schedule(opt_cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """lr(step) = learning_rate * 0.5 ** floor(step / (halve_every_epochs * steps_per_epoch))."""
    return optax.exponential_decay(
        opt_cfg.learning_rate, transition_steps=opt_cfg.halve_every_epochs * steps_per_epoch,
        decay_rate=0.5, staircase=True)


@dataclasses.dataclass(frozen=True)
class Nets:
    """The modules of a run, built once from the `model` config section."""

    sr: nn.Module
    down: nn.Module
    disc: nn.Module

    @classmethod
    def from_config(cls, model_cfg: ml_collections.ConfigDict) -> Nets:
        return cls(models.build_sr(model_cfg), models.build_downsampler(model_cfg),
                   models.build_discriminator(model_cfg))


def stage_networks(stage: str, stage_cfg: ml_collections.ConfigDict, nets: Nets) -> dict[str, tuple[nn.Module, str]]:
    """Trainable networks of a stage: name -> (module, 'hr' or 'lr', the input it takes)."""
    if stage == STAGE1:
        return {"denet": (nets.down, "hr"), "d_lr": (nets.disc, "lr")}
    out = {"tnet": (nets.sr, "lr"), "d_t": (nets.disc, "hr")}
    if stage_cfg.teacher == "cycle":
        out.update(dsnet=(nets.down, "hr"), d_ds=(nets.disc, "lr"))
    if stage_cfg.student:
        out.update(snet=(nets.sr, "lr"), d_s=(nets.disc, "hr"))
        if stage_cfg.cycle:
            out.update(dsnet=(nets.down, "hr"), d_ds=(nets.disc, "lr"))
    return out


def init_state(stage: str, stage_cfg, nets: Nets, tx: optax.GradientTransformation, seed: int,
               hr_size: int, lr_size: int, frozen: dict[str, Any] | None = None) -> TrainState:
    """Random initial state of a stage (each network from its own fold of the seed key)."""
    key = jax.random.key(seed)
    shapes = {"hr": (1, hr_size, hr_size, 3), "lr": (1, lr_size, lr_size, 3)}
    states = {}
    for i, (name, (module, kind)) in enumerate(sorted(stage_networks(stage, stage_cfg, nets).items())):
        params = module.init(jax.random.fold_in(key, i), jnp.zeros(shapes[kind]))["params"]
        states[name] = NetState(params, tx.init(params))
    return TrainState(jnp.zeros((), jnp.int32), jax.random.key_data(key), states, frozen or {})


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The `stage1` or `stage2` section."""
    return config.stage1 if stage == STAGE1 else config.stage2


def abstract_state(stage: str, config: ml_collections.ConfigDict, nets: Nets,
                   tx: optax.GradientTransformation) -> TrainState:
    """Shapes and dtypes of `stage`'s initial TrainState under `config` (DeNet frozen into stage 2
    for the DeNet teacher), as jax.ShapeDtypeStruct leaves: nothing is initialised."""
    section = stage_config(config, stage)
    hr, lr = config.data.hr_size, config.data.lr_size

    def build():
        frozen = {}
        if stage == STAGE2 and section.teacher == "denet":
            frozen = {"denet": nets.down.init(jax.random.key(0), jnp.zeros((1, hr, hr, 3)))["params"]}
        return init_state(stage, section, nets, tx, config.seed, hr, lr, frozen)

    return jax.eval_shape(build)


def generator_update(state: NetState, loss_fn: Callable, tx) -> tuple[NetState, Any]:
    """One Adam step of a generator on `loss_fn(params) -> (loss, aux)`; returns aux."""
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return NetState(optax.apply_updates(state.params, updates), opt_state), aux


def discriminator_update(state: NetState, disc: nn.Module, real: jax.Array, fake: jax.Array,
                         gan_loss: str, tx) -> tuple[NetState, jax.Array]:
    """One Adam step of a discriminator: real vs the (gradient-stopped) pre-update fakes."""
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(params):
        real_logits = disc.apply({"params": params}, real)
        fake_logits = disc.apply({"params": params}, fake)
        loss = losses.discriminator_adversarial(real_logits, fake_logits, gan_loss)
        return loss, loss

    return generator_update(state, loss_fn, tx)


def _joint(names: tuple[str, ...], nets: dict[str, NetState]) -> NetState:
    """Several networks viewed as one NetState (dicts by name), for a loss they share."""
    return NetState({n: nets[n].params for n in names}, {n: nets[n].opt_state for n in names})


def _split(names: tuple[str, ...], joint: NetState) -> dict[str, NetState]:
    return {n: NetState(joint.params[n], joint.opt_state[n]) for n in names}


def _joint_update(nets: dict[str, NetState], names: tuple[str, ...], loss_fn, tx):
    """Update `names` together on one loss of their params dict; Adam is elementwise, so this
    equals separate Adam updates of each network on its own gradient."""
    joint_tx = _per_network(tx, names)
    new, aux = generator_update(_joint(names, nets), loss_fn, joint_tx)
    return _split(names, new), aux


def _per_network(tx, names):
    """Apply `tx` to a dict of networks, each with its own (already initialised) state."""

    def update(grads, states, params):
        out = {n: tx.update(grads[n], states[n], params[n]) for n in names}
        return {n: u for n, (u, _) in out.items()}, {n: s for n, (_, s) in out.items()}

    return optax.GradientTransformation(lambda p: {n: tx.init(p[n]) for n in names}, update)


def stage1_step(cfg: ml_collections.ConfigDict, nets: Nets, tx) -> Callable:
    """DeNet + D_LR: L_DeNet = content * |DeNet(HR) - bicubic(HR)|_1 + adversarial * L_adv."""
    s1 = cfg.stage1

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
        hr, lr_real = batch["hr"], batch["lr"]
        d_lr = state.nets["d_lr"].params

        def denet_loss(params):
            fake = nets.down.apply({"params": params}, hr)
            content = losses.l1(fake, losses.bicubic_down(hr, cfg.model.sr.scale))
            adv = losses.generator_adversarial(nets.disc.apply({"params": d_lr}, fake), s1.gan_loss)
            total = s1.content_weight * content + s1.adversarial_weight * adv
            return total, (fake, {"denet/content": content, "denet/adv": adv})

        denet, (fake, metrics) = generator_update(state.nets["denet"], denet_loss, tx)
        disc, metrics["d_lr/loss"] = discriminator_update(
            state.nets["d_lr"], nets.disc, lr_real, fake, s1.gan_loss, tx)
        return state.replace(step=state.step + 1, nets={"denet": denet, "d_lr": disc}), metrics

    return step


def synthetic_lr(cfg, nets: Nets, frozen: dict[str, Any], hr: jax.Array) -> jax.Array:
    """The LR half of the teacher's pairs: DeNet(HR), or bicubic(HR) for `teacher='bicubic'`.

    Decision: DeNet's output is clipped to [0, 1], the range of the real LR images TNet's
    pseudo-HR is later made from (an undertrained DeNet strays far outside it).
    """
    if cfg.stage2.teacher == "bicubic":
        return losses.bicubic_down(hr, cfg.model.sr.scale)
    lr = nets.down.apply({"params": frozen["denet"]}, hr)
    return jnp.clip(jax.lax.stop_gradient(lr), 0.0, 1.0)


def stage2_step(cfg: ml_collections.ConfigDict, nets: Nets, tx) -> Callable:
    """TNet, SNet and DSNet with their discriminators (the paper's stage 2, eq. 5-7).

    - TNet on (LR_syn, HR): rec * mean_t |HR - SR_T(t)|^2 + adv * L_adv(D_T).
    - SNet on real LR, P = stop_gradient(TNet_pre(LR)[T]):
      rec * mean_t |P - SR_S(t)|^2 + adv * L_adv(D_S) + cycle * |LR - DSNet(SR_S(T))|^2,
      the cycle term training SNet and DSNet; DSNet's own adversarial term (D_DS) reaches
      DSNet only.
    - `teacher='cycle'` replaces the TNet pair by CycleGAN training of TNet and DSNet.
    """
    s2 = cfg.stage2
    sr, down, disc = nets.sr, nets.down, nets.disc

    def apply(module, params, x):
        return module.apply({"params": params}, x)

    def g_adv(params, fake):
        return losses.generator_adversarial(apply(disc, params, fake), s2.gan_loss)

    def teacher_pairs(state, hr, updated, metrics):
        lr_syn = synthetic_lr(cfg, nets, state.frozen, hr)
        d_t = state.nets["d_t"].params

        def tnet_loss(params):
            outputs = apply(sr, params, lr_syn)
            rec = losses.reconstruction(hr, outputs)
            adv = g_adv(d_t, outputs[-1])
            total = s2.teacher_rec_weight * rec + s2.teacher_adv_weight * adv
            return total, (outputs[-1], {"tnet/rec": rec, "tnet/adv": adv})

        updated["tnet"], (fake, terms) = generator_update(state.nets["tnet"], tnet_loss, tx)
        metrics.update(terms)
        updated["d_t"], metrics["d_t/loss"] = discriminator_update(
            state.nets["d_t"], disc, hr, fake, s2.gan_loss, tx)

    def teacher_cycle(state, hr, lr_real, updated, metrics):
        d_t, d_ds = state.nets["d_t"].params, state.nets["d_ds"].params

        def cycle_loss(params):
            sr_real = apply(sr, params["tnet"], lr_real)
            lr_fake = apply(down, params["dsnet"], hr)
            terms = {
                "tnet/adv": g_adv(d_t, sr_real[-1]),
                "dsnet/adv": g_adv(d_ds, lr_fake),
                "cycle/lr": losses.mse(lr_real, apply(down, params["dsnet"], sr_real[-1])),
                "cycle/hr": losses.reconstruction(hr, apply(sr, params["tnet"], lr_fake)),
            }
            total = (s2.teacher_adv_weight * terms["tnet/adv"]
                     + s2.dsnet_adv_weight * terms["dsnet/adv"]
                     + s2.cycle_weight * (terms["cycle/lr"] + terms["cycle/hr"]))
            return total, ((sr_real[-1], lr_fake), terms)

        new, ((sr_fake, lr_fake), terms) = _joint_update(state.nets, ("tnet", "dsnet"), cycle_loss, tx)
        updated.update(new)
        metrics.update(terms)
        updated["d_t"], metrics["d_t/loss"] = discriminator_update(
            state.nets["d_t"], disc, hr, sr_fake, s2.gan_loss, tx)
        updated["d_ds"], metrics["d_ds/loss"] = discriminator_update(
            state.nets["d_ds"], disc, lr_real, lr_fake, s2.gan_loss, tx)

    def student(state, hr, lr_real, updated, metrics):
        pseudo = jax.lax.stop_gradient(apply(sr, state.nets["tnet"].params, lr_real)[-1])
        d_s = state.nets["d_s"].params
        names = ("snet", "dsnet") if s2.cycle else ("snet",)

        def snet_loss(params):
            outputs = apply(sr, params["snet"], lr_real)
            terms = {"snet/rec": losses.reconstruction(pseudo, outputs),
                     "snet/adv": g_adv(d_s, outputs[-1])}
            total = s2.student_rec_weight * terms["snet/rec"] + s2.student_adv_weight * terms["snet/adv"]
            lr_cycle = None
            if s2.cycle:
                lr_cycle = apply(down, params["dsnet"], outputs[-1])
                terms["cycle/lr"] = losses.mse(lr_real, lr_cycle)
                # DSNet's adversarial term must not reach SNet: DSNet sees a stopped copy.
                lr_fake = apply(down, params["dsnet"], jax.lax.stop_gradient(outputs[-1]))
                terms["dsnet/adv"] = g_adv(state.nets["d_ds"].params, lr_fake)
                total += s2.cycle_weight * terms["cycle/lr"] + s2.dsnet_adv_weight * terms["dsnet/adv"]
            return total, ((outputs[-1], lr_cycle), terms)

        new, ((sr_fake, lr_fake), terms) = _joint_update(state.nets, names, snet_loss, tx)
        updated.update(new)
        metrics.update(terms)
        updated["d_s"], metrics["d_s/loss"] = discriminator_update(
            state.nets["d_s"], disc, hr, sr_fake, s2.gan_loss, tx)
        if s2.cycle:
            updated["d_ds"], metrics["d_ds/loss"] = discriminator_update(
                state.nets["d_ds"], disc, lr_real, lr_fake, s2.gan_loss, tx)

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
        hr, lr_real = batch["hr"], batch["lr"]
        updated, metrics = {}, {}
        if s2.teacher == "cycle":
            teacher_cycle(state, hr, lr_real, updated, metrics)
        else:
            teacher_pairs(state, hr, updated, metrics)
        if s2.student:
            student(state, hr, lr_real, updated, metrics)
        return state.replace(step=state.step + 1, nets=updated), metrics

    return step


def stage_step(stage: str, cfg, nets: Nets, tx) -> Callable:
    """The (unjitted) step function of `stage`."""
    return (stage1_step if stage == STAGE1 else stage2_step)(cfg, nets, tx)


def scan_steps(step: Callable, unroll: bool | None = None) -> Callable:
    """Several steps in one call: (state, batches) -> (state, metrics).

    Every leaf of `batches` has a leading axis K (the K batches, in order; a batch's own axes
    follow); every metric comes back with that leading axis, one value per step. `unroll`
    True writes the K steps one after the other into the program (K = 1: the step itself);
    False runs them as a `lax.scan` loop on the device, one compiled body whatever K is. None
    (default): unrolled on CPU, where XLA runs the convolution gradients of a loop body about
    50x slower than the same ops outside a loop (its CPU convolution canonicalisation does not
    reach loop bodies), and a loop elsewhere, where compile time then does not grow with K.
    Either form gives the parameters of K separate calls to float rounding (XLA compiles a
    4-step program slightly differently from a 1-step one; on CPU, measured, the last bit of a
    few values).
    """
    if unroll is None:
        unroll = jax.default_backend() == "cpu"

    def unrolled(state: TrainState, batches: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
        count = jax.tree_util.tree_leaves(batches)[0].shape[0]
        per_step = []
        for i in range(count):
            state, values = step(state, jax.tree_util.tree_map(lambda x: x[i], batches))
            per_step.append(values)
        return state, {k: jnp.stack([values[k] for values in per_step]) for k in per_step[0]}

    def looped(state: TrainState, batches: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
        return jax.lax.scan(step, state, batches)

    return unrolled if unroll else looped
