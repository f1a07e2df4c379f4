"""The pieces every stage's training step is made of: train states, the optimizer, one Adam
update of a generator or a discriminator, and K steps per call.

A stage (fsr_jax.stages) composes its step from one update per GAN pair. Every pair's generator
update and its discriminator update (on the pre-update fakes) read the same pre-step parameters,
so a step is one pure function (state, batch) -> (state, metrics), jitted once and data-parallel
over the device mesh: losses are means over the global batch, so XLA sums the gradients over
devices and the result does not depend on how many devices share the batch.
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


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """The `optimizer` config section as a hashable value (a part of a stage's StepSpec)."""

    learning_rate: float
    halve_every_epochs: int
    b1: float
    b2: float

    @classmethod
    def from_config(cls, opt_cfg: ml_collections.ConfigDict) -> OptimizerSpec:
        return cls(float(opt_cfg.learning_rate), int(opt_cfg.halve_every_epochs), float(opt_cfg.b1),
                   float(opt_cfg.b2))


def make_optimizer(opt_cfg: ml_collections.ConfigDict | OptimizerSpec, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam with the learning rate halved every `halve_every_epochs` epochs (staircase)."""
    return optax.adam(learning_rate_schedule(opt_cfg, steps_per_epoch), opt_cfg.b1, opt_cfg.b2)


def learning_rate_schedule(opt_cfg: ml_collections.ConfigDict | OptimizerSpec, steps_per_epoch: int) -> optax.Schedule:
    """lr(step) = learning_rate * 0.5 ** floor(step / (halve_every_epochs * steps_per_epoch))."""
    return optax.exponential_decay(
        opt_cfg.learning_rate, transition_steps=opt_cfg.halve_every_epochs * steps_per_epoch,
        decay_rate=0.5, staircase=True)


@dataclasses.dataclass(frozen=True)
class Modules:
    """The Flax modules of a run's networks, built once from the `model` config section (their
    parameters and optimizer states, by network name, are `TrainState.nets`)."""

    sr: nn.Module
    down: nn.Module
    #: (pair, discriminator) of every GAN pair (models.DISCRIMINATOR_PAIRS), hashable.
    discs: tuple[tuple[str, nn.Module], ...]

    def disc(self, pair: str) -> nn.Module:
        """The discriminator of GAN pair `pair` ('d_lr', 'd_t', 'd_s', 'd_ds')."""
        return dict(self.discs)[pair]

    @classmethod
    def from_config(cls, model_cfg: ml_collections.ConfigDict) -> Modules:
        return cls(models.build_sr(model_cfg), models.build_downsampler(model_cfg),
                   tuple((pair, models.build_discriminator(model_cfg, pair)) for pair in models.DISCRIMINATOR_PAIRS))


def generator_update(state: NetState, loss_fn: Callable, tx, lr_scale: float = 1.0) -> tuple[NetState, Any]:
    """One Adam step of a generator on `loss_fn(params) -> (loss, aux)`; returns aux.

    `lr_scale` multiplies the step: Adam's state does not depend on the learning rate, so this
    is Adam at `lr_scale` times the schedule's rate."""
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    if lr_scale != 1.0:
        updates = jax.tree_util.tree_map(lambda u: lr_scale * u, updates)
    return NetState(optax.apply_updates(state.params, updates), opt_state), aux


def discriminator_update(state: NetState, disc: nn.Module, real: jax.Array, fake: jax.Array,
                         gan_loss: str, tx, lr_scale: float = 1.0) -> tuple[NetState, jax.Array]:
    """One Adam step of a discriminator (at `lr_scale` times the learning rate): real vs the
    (gradient-stopped) pre-update fakes."""
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(params):
        real_logits = disc.apply({"params": params}, real)
        fake_logits = disc.apply({"params": params}, fake)
        loss = losses.discriminator_adversarial(real_logits, fake_logits, gan_loss)
        return loss, loss

    return generator_update(state, loss_fn, tx, lr_scale)


def _joint(names: tuple[str, ...], nets: dict[str, NetState]) -> NetState:
    """Several networks viewed as one NetState (dicts by name), for a loss they share."""
    return NetState({n: nets[n].params for n in names}, {n: nets[n].opt_state for n in names})


def _split(names: tuple[str, ...], joint: NetState) -> dict[str, NetState]:
    return {n: NetState(joint.params[n], joint.opt_state[n]) for n in names}


def joint_update(nets: dict[str, NetState], names: tuple[str, ...], loss_fn: Callable, tx) -> tuple[dict[str, NetState], Any]:
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
