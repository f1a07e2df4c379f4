"""How fast training and SR inference run: the timing core of tools/benchmark.py.

Every figure is measured on device-resident random faces (uniform noise, float32 in [0, 1)) over
every local device, through the functions training and inference themselves use: a stage's
jitted steps from `train.compiled` (K steps per call, the state donated), its initial state from
`stages.init_state` (frozen parameters randomly initialised), its length from
`stages.total_steps`. Times are wall seconds after warm-up calls, waiting for the device.
Compilation is timed beside, never inside, a figure.
"""
from __future__ import annotations

import functools
import platform
import resource
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding, PartitionSpec

from fsr_jax import models, stages, train
from fsr_jax.mesh import DATA_AXIS, batch_sharding, data_mesh, replicated

#: Per-face shapes of a training batch, (H, W, C) by key.
FACE_SHAPES = {"hr": (64, 64, 3), "lr": (16, 16, 3)}
#: Steps per epoch of the StepSpecs measured (it sets only the learning-rate schedule).
STEPS_PER_EPOCH = 1000


def mesh_for(batch_size: int):
    """The data mesh over every device; ValueError unless `batch_size` splits evenly over it."""
    mesh = data_mesh()
    if batch_size % mesh.devices.size:
        raise ValueError(f"batch size {batch_size} is not a multiple of the {mesh.devices.size} "
                         "devices of the data mesh")
    return mesh


def seconds_per_call(call: Callable, steps: int, warmup: int) -> float:
    """Wall seconds per `call()` over `steps` calls after `warmup`, waiting for the device."""
    for _ in range(warmup):
        jax.block_until_ready(call())
    start = time.perf_counter()
    for _ in range(steps):
        out = call()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def device_info() -> dict:
    """The device kind and count, the JAX version and the host platform."""
    device = jax.devices()[0]
    return {"device": getattr(device, "device_kind", device.platform), "devices": jax.device_count(),
            "jax": jax.__version__, "machine": platform.platform()}


def peak_rss_mb() -> int:
    """This process's peak resident memory, MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _stacked_sharding(mesh) -> NamedSharding:
    """K stacked batches: the batch axis (axis 1) split over `data`, the step axis whole."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def face_batches(steps_per_call: int, batch_size: int, mesh) -> dict:
    """K = `steps_per_call` batches of random faces on the devices: {'hr': (K, B, 64, 64, 3),
    'lr': (K, B, 16, 16, 3)} float32 in [0, 1), a different batch per step."""
    keys = jax.random.split(jax.random.key(2), len(FACE_SHAPES))
    faces = {name: jax.random.uniform(key, (steps_per_call, batch_size, *shape))
             for key, (name, shape) in zip(keys, FACE_SHAPES.items())}
    return jax.device_put(faces, _stacked_sharding(mesh))


@functools.lru_cache(maxsize=None)
def initial_state(spec: stages.StepSpec):
    """The initial TrainState of a stage's `spec` replicated over the data mesh, built once per
    spec; the parameters the stage takes frozen are randomly initialised like the rest."""
    mesh = data_mesh()
    tx, _, _ = train.compiled(spec, mesh)
    frozen = spec.stage.init_frozen(spec, jax.random.key(1))
    return jax.device_put(stages.init_state(spec, tx, 0, frozen), replicated(mesh))


@functools.lru_cache(maxsize=None)
def train_program(spec: stages.StepSpec, batch_size: int, steps_per_call: int):
    """(compiled call (state, K stacked batches) -> (state, metrics) running K = `steps_per_call`
    steps, from the training loop's own jitted function; seconds to lower and compile it)."""
    mesh = mesh_for(batch_size)
    _, steps, _ = train.compiled(spec, mesh)
    batches = {name: jax.ShapeDtypeStruct((steps_per_call, batch_size, *shape), "float32",
                                          sharding=_stacked_sharding(mesh))
               for name, shape in FACE_SHAPES.items()}
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = steps.lower(initial_state(spec), batches).compile()
    return compiled, time.perf_counter() - start


def train_run(config: ml_collections.ConfigDict, stage: stages.Stage, batch_size: int, steps_per_call: int):
    """What timing `stage`'s training needs: (its compiled call running K = `steps_per_call` steps,
    seconds to compile it, a fresh copy of the initial state, K staged batches of random faces)."""
    spec = stages.step_spec(config, stage, steps_per_epoch=STEPS_PER_EPOCH)
    compiled, compile_s = train_program(spec, batch_size, steps_per_call)
    state = jax.tree.map(jnp.copy, initial_state(spec))
    return compiled, compile_s, state, face_batches(steps_per_call, batch_size, mesh_for(batch_size))


def measure_train(config: ml_collections.ConfigDict, stage: stages.Stage, batch_size: int,
                  steps_per_call: int, calls: int, warmup: int) -> dict:
    """`stage`'s training speed at `batch_size` over every device, K = `steps_per_call` steps per
    jitted call on K staged batches, timed over `calls` calls after `warmup` from a fresh copy of
    the initial state: step_ms (call time / K), call_ms, images_per_s, compile_s (trace +
    compile, once per process for a config, batch size and K)."""
    compiled, compile_s, state, batches = train_run(config, stage, batch_size, steps_per_call)

    def advance():
        nonlocal state
        state, metrics = compiled(state, batches)
        return metrics

    seconds = seconds_per_call(advance, calls, warmup)
    step_s = seconds / steps_per_call
    return {"batch_size": batch_size, "steps_per_call": steps_per_call, "calls": calls,
            "step_ms": round(1000 * step_s, 3), "call_ms": round(1000 * seconds, 2),
            "images_per_s": round(batch_size / step_s, 1), "compile_s": round(compile_s, 2)}


def flops_fields(flops: float | None, batch_size: int, step_ms: float, peak_tflops: float,
                 devices: int) -> dict:
    """gflop_per_image, achieved_tflops (all devices) and, given the per-device `peak_tflops`,
    utilisation (0..1) of a step of `flops` FLOPs taking `step_ms`; {} without FLOPs."""
    if not flops:
        return {}
    achieved = flops / (step_ms / 1000) / 1e12
    out = {"gflop_per_image": round(flops / batch_size / 1e9, 3), "achieved_tflops": round(achieved, 2)}
    if peak_tflops:
        out["utilisation"] = round(achieved / (peak_tflops * devices), 4)
    return out


def predict_stage(steps: int, measurements: list[dict]) -> dict:
    """A stage's predicted wall time at its fastest measurement (the one with the least step_ms):
    steps x step_ms, in seconds and minutes, and that measurement's K."""
    best = min(measurements, key=lambda m: m["step_ms"])
    seconds = steps * best["step_ms"] / 1000
    return {"steps": steps, "best_steps_per_call": best["steps_per_call"], "step_ms": best["step_ms"],
            "predicted_s": round(seconds, 1), "predicted_min": round(seconds / 60, 2)}


def measure_schedule(config: ml_collections.ConfigDict, schedule: ml_collections.ConfigDict, num_hr: int,
                     ks: tuple[int, ...], steps: int, warmup: int) -> dict:
    """The wall time of `schedule`'s stages (their batch sizes and lengths: `stages.total_steps`
    on `num_hr` HR faces) with `config`'s networks, predicted from step times measured for each K
    in `ks` (about `steps` steps timed per K, in whole calls), the fastest K per stage. Compile
    seconds are summed beside the prediction, not in it."""
    entries = []
    for number, name in enumerate(schedule.stages, start=1):
        stage, section = stages.get(name), schedule[name]
        runs = [measure_train(config, stage, section.batch_size, k, -(-steps // k), warmup) for k in ks]
        entries.append({"stage": number, "stage_name": name, "batch_size": section.batch_size,
                        "epochs": section.epochs, "measurements": runs,
                        **predict_stage(stages.total_steps(schedule, stage, num_hr), runs)})
    total = sum(s["predicted_s"] for s in entries)
    return {"num_hr": num_hr, "stages": entries, "predicted_s": round(total, 1),
            "predicted_min": round(total / 60, 2),
            "compile_s": round(sum(m["compile_s"] for s in entries for m in s["measurements"]), 1)}


@functools.lru_cache(maxsize=None)
def _sr_params(net):
    """Random parameters of the SR module `net`, replicated over the data mesh, once per module."""
    params = net.init(jax.random.key(1), jnp.zeros((1, *FACE_SHAPES["lr"])))
    return jax.device_put(params, replicated(data_mesh()))


def measure_infer(config: ml_collections.ConfigDict, batch_size: int, steps: int, warmup: int) -> dict:
    """SR inference (`config.model`'s SR net) on `batch_size` random 16x16 faces split over every
    device: batch_ms, faces_per_s (64x64 outputs of the last iteration) and compile_s."""
    mesh = mesh_for(batch_size)
    net = models.build_sr(config.model)
    params = _sr_params(net)
    lr = jax.device_put(jax.random.uniform(jax.random.key(0), (batch_size, *FACE_SHAPES["lr"])),
                        batch_sharding(mesh))
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        apply = jax.jit(lambda p, x: net.apply(p, x)[-1]).lower(params, lr).compile()
    compile_s = time.perf_counter() - start
    seconds = seconds_per_call(lambda: apply(params, lr), steps, warmup)
    return {"batch_size": batch_size, "batch_ms": round(1000 * seconds, 2),
            "faces_per_s": round(batch_size / seconds, 1), "compile_s": round(compile_s, 2)}
