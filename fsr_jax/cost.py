"""What a training step costs (XLA's FLOP count) and what a run will take from it.

The FLOPs come from XLA's cost analysis of one step lowered for the host CPU on abstract
values (nothing is initialised or compiled): it counts every convolution, which the analysis
of a program compiled for a GPU does not (cuDNN calls are opaque to it). Stages are compared
by FLOPs to predict a stage not yet run from the speed measured on the one running.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections

from fsr_jax import stages
from fsr_jax.steps import make_optimizer

#: Rough sustained rate of the full-size training step on one x86 CPU core, from this project's
#: measurements on a 2-core machine (stage 2 at batch 4: 518 GFLOP in 3.9 s; stage 1: 116 GFLOP
#: in 0.39 s). Only used to warn before a CPU run that would take hours.
CPU_GFLOPS_PER_CORE = 65.0


def step_flops(stage: stages.Stage, config: ml_collections.ConfigDict, batch_size: int) -> float | None:
    """FLOPs of one training step of `stage` on a global batch of `batch_size`; None where XLA
    gives no figure. Lowers on the CPU on abstract values: a few seconds, no memory."""
    spec = stages.step_spec(config, stage, steps_per_epoch=1000)
    tx = make_optimizer(spec.optimizer, spec.steps_per_epoch)
    state = stages.abstract_state(spec, tx)
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), state)
    hr, lr = spec.hr_size, spec.lr_size
    batch = {"hr": jax.ShapeDtypeStruct((batch_size, hr, hr, 3), jnp.float32, sharding=cpu),
             "lr": jax.ShapeDtypeStruct((batch_size, lr, lr, 3), jnp.float32, sharding=cpu)}
    cost = jax.jit(stage.step(spec, tx)).lower(state, batch).cost_analysis()
    return float(cost["flops"]) if cost and cost.get("flops") else None


def cpu_seconds(flops: float, cores: int | None = None) -> float:
    """Rough seconds for `flops` of training-step work on this machine's CPU cores."""
    return flops / (CPU_GFLOPS_PER_CORE * 1e9 * (cores or os.cpu_count() or 1))


def predicted_seconds(steps_left: dict[str, int], flops: dict[str, float], stage: str,
                      seconds_per_step: float) -> float:
    """Seconds for `steps_left` (stage -> steps) at the speed measured on `stage` (seconds per
    step), other stages scaled by their FLOPs per step relative to it."""
    per_flop = seconds_per_step / flops[stage]
    return sum(steps * flops[name] * per_flop for name, steps in steps_left.items())
