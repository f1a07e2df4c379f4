"""The training loops: each stage data-parallel over every device, checkpointed and resumable.

`train_and_evaluate(config, workdir)` runs the configured stages in order, each in its own
folder W/<stage> (checkpoints/, metrics.jsonl, tensorboard/, images/, config.json). Rerunning
resumes every stage from its newest checkpoint; a finished stage is skipped.
"""
from __future__ import annotations

import functools
import json
import math
import pathlib
import signal
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from fsr_jax import checkpointing, config_checks, data, losses, observe
from fsr_jax.mesh import data_mesh, replicated
from fsr_jax.steps import (STAGE1, STAGE2, Nets, TrainState, init_state, learning_rate_schedule,
                           make_optimizer, scan_steps, stage_step, synthetic_lr)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; the message names the term and the step."""


class StopRequested:
    """Turns SIGTERM / SIGINT (pre-emption, Ctrl-C) into a flag the loop checks after each step."""

    def __init__(self):
        self.signal: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopRequested:
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame) -> None:
        del frame
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def __bool__(self) -> bool:
        return self.signal is not None


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The `stage1` or `stage2` section."""
    return config.stage1 if stage == STAGE1 else config.stage2


def check_finite(metrics: dict[str, float], step: int) -> None:
    """Raise NonFiniteLossError naming the first NaN / Inf term of step `step` (1-based)."""
    for name in sorted(metrics):
        if not math.isfinite(metrics[name]):
            raise NonFiniteLossError(
                f"loss term {name!r} is {metrics[name]} at step {step}; stopping. The newest "
                f"checkpoint holds the last good state")


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a call that took the step count from `before` to `after` passed a multiple of
    `every`: logs, image grids and checkpoints happen at the first call boundary after one."""
    return after // every > before // every


def unstack_metrics(metrics: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """One call's metrics, each (K,), as K dicts of floats, one per step in order."""
    count = len(next(iter(metrics.values())))
    return [{k: float(v[i]) for k, v in metrics.items()} for i in range(count)]


def frozen_networks(config: ml_collections.ConfigDict, workdir: str, stage: str) -> dict[str, Any]:
    """Host parameters a stage uses but does not train: DeNet in stage 2 (paper pairs only)."""
    if stage != STAGE2 or config.stage2.teacher != "denet":
        return {}
    folder = config_checks.denet_checkpoints(config, workdir)
    params, step = checkpointing.restore_params(folder, ("denet",))
    logging.info("stage 2 takes DeNet from %s (step %d)", folder, step)
    return params


def preview_fn(stage: str, config: ml_collections.ConfigDict, nets: Nets):
    """(state, batch) -> {grid name: list of panels (N, S, S, 3) in [0, 1]} for image summaries.

    degradation: HR | bicubic LR | DeNet LR | a real LR. teacher_student, one grid per SR net:
    its LR input | the T iterations | Canny | DoG | its target (HR for TNet, pseudo-HR for SNet).
    """
    count, size = config.train.summary_images, config.data.hr_size
    scale = config.model.sr.scale

    def panel(images, kind="rgb"):
        return observe.to_panel(images, size, kind)

    def sr_grid(params, lr, target):
        outputs, edge_maps = nets.sr.apply({"params": params}, lr, return_edges=True)
        columns = [panel(lr)] + [panel(o) for o in outputs]
        columns += [panel(edge_maps[k], kind) for k, kind in (("canny", "binary"), ("dog", "signed"))
                    if k in edge_maps]
        return columns + [panel(target)]

    def preview(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, list[jax.Array]]:
        hr, lr = batch["hr"][:count], batch["lr"][:count]
        if stage == STAGE1:
            fake = nets.down.apply({"params": state.nets["denet"].params}, hr)
            return {"denet": [panel(hr), panel(losses.bicubic_down(hr, scale)), panel(fake), panel(lr)]}
        tnet = state.nets["tnet"].params
        teacher_lr = lr if config.stage2.teacher == "cycle" else synthetic_lr(config, nets, state.frozen, hr)
        grids = {"tnet": sr_grid(tnet, teacher_lr, hr)}
        if config.stage2.student:
            pseudo = nets.sr.apply({"params": tnet}, lr)[-1]
            grids["snet"] = sr_grid(state.nets["snet"].params, lr, pseudo)
        return grids

    return preview


def step_config_key(config: ml_collections.ConfigDict) -> str:
    """The config sections a stage's compiled functions depend on, as a hashable JSON string."""
    loop_only = ("batch_size", "epochs", "max_steps", "denet_checkpoint")
    part = {k: config[k].to_dict() for k in ("model", "optimizer")}
    for k in ("stage1", "stage2"):
        part[k] = {key: value for key, value in config[k].items() if key not in loop_only}
    part["sizes"] = (config.data.hr_size, config.data.lr_size, config.train.summary_images)
    return json.dumps(part, sort_keys=True, default=list)


@functools.lru_cache(maxsize=4)
def compiled(stage: str, config_key: str, steps_per_epoch: int, mesh):
    """(nets, optimizer, jitted steps, jitted preview) of a stage, built once per process for a
    config, so that a rerun in the same process (tests, notebooks) reuses the compilation.

    The steps function runs K steps in one call: (state, K stacked batches) -> (state, metrics
    with a leading K axis); it compiles once per K.
    """
    part = json.loads(config_key)
    config = ml_collections.ConfigDict({k: v for k, v in part.items() if k != "sizes"})
    hr_size, lr_size, summary_images = part["sizes"]
    config.data = ml_collections.ConfigDict(dict(hr_size=hr_size, lr_size=lr_size))
    config.train = ml_collections.ConfigDict(dict(summary_images=summary_images))
    nets = Nets.from_config(config.model)
    tx = make_optimizer(config.optimizer, steps_per_epoch)
    repl = replicated(mesh)
    steps = jax.jit(scan_steps(stage_step(stage, config, nets, tx)), donate_argnums=0,
                    out_shardings=(repl, repl))
    preview = jax.jit(preview_fn(stage, config, nets), out_shardings=repl)
    return nets, tx, steps, preview


class Stage:
    """One stage's run: its data, state, compiled step, checkpoints and summaries."""

    def __init__(self, stage: str, config: ml_collections.ConfigDict, workdir: str, mesh):
        self.name, self.config, self.mesh = stage, config, mesh
        self.cfg = stage_config(config, stage)
        self.dir = pathlib.Path(workdir) / stage
        self.data = data.make_train_iterator(
            config.data, global_batch_size=self.cfg.batch_size, seed=config.seed,
            process_index=jax.process_index(), process_count=jax.process_count())
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.cfg.max_steps or self.cfg.epochs * self.steps_per_epoch
        self.lr_schedule = learning_rate_schedule(config.optimizer, self.steps_per_epoch)
        self.primary = jax.process_index() == 0
        self.checkpoints = checkpointing.manager(self.dir / "checkpoints", config.train.keep_checkpoints)
        self.nets, self.tx, self.steps_fn, self.preview = compiled(
            stage, step_config_key(config), self.steps_per_epoch, mesh)

    def initial_state(self, workdir: str) -> tuple[TrainState, int]:
        """The newest checkpoint's state (and the data position restored), else a fresh one."""
        repl = replicated(self.mesh)
        frozen = frozen_networks(self.config, workdir, self.name)
        data_cfg = self.config.data

        def fresh(frozen_params):
            return init_state(self.name, self.cfg, self.nets, self.tx, self.config.seed,
                              data_cfg.hr_size, data_cfg.lr_size, frozen_params)

        if self.checkpoints.latest_step() is None:
            state = jax.jit(fresh, out_shardings=repl)(frozen)
            return state, 0
        abstract = jax.eval_shape(fresh, frozen)
        abstract = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl), abstract)
        state, data_state, step = checkpointing.restore(self.checkpoints, abstract)
        self.data.set_state(data_state)
        logging.info("[%s] resumed from checkpoint %d in %s", self.name, step, self.checkpoints.directory)
        return state, step

    def save(self, state: TrainState, step: int) -> None:
        params_finite = jax.tree_util.tree_reduce(
            lambda ok, x: ok and bool(jnp.all(jnp.isfinite(x))), state.nets, True)
        if not params_finite:
            raise NonFiniteLossError(f"parameters are not finite at step {step}; not saving")
        checkpointing.save(self.checkpoints, step, state, self.data.get_state())
        logging.info("[%s] checkpoint %d written", self.name, step)

    def summaries(self, writer: observe.SummaryWriter, state: TrainState, batch, step: int) -> None:
        grids = jax.device_get(self.preview(state, batch))
        writer.images(step, {f"{self.name}/{name}": observe.image_grid(cols) for name, cols in grids.items()})

    def run(self, workdir: str) -> TrainState:
        """Train from the newest checkpoint to `total_steps`; SIGTERM/SIGINT save and return."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.primary:
            (self.dir / "config.json").write_text(self.config.to_json_best_effort(indent=2))
        state, step = self.initial_state(workdir)
        if step >= self.total_steps:
            logging.info("[%s] finished earlier (step %d of %d)", self.name, step, self.total_steps)
            return state
        logging.info("[%s] %d steps (%d per epoch) at global batch %d over %d devices, from step %d",
                     self.name, self.total_steps, self.steps_per_epoch, self.cfg.batch_size,
                     jax.device_count(), step)
        writer = observe.SummaryWriter(self.dir, enabled=self.primary)
        progress = observe.Progress(self.name, self.total_steps, self.steps_per_epoch,
                                    self.cfg.batch_size, step)
        train = self.config.train
        interval: dict[str, list[float]] = {}
        unchecked: list[tuple[int, dict]] = []   # (first step of a call, device metrics) not fetched yet
        with StopRequested() as stop, jax.set_mesh(self.mesh):
            while step < self.total_steps:
                count = min(train.steps_per_call, self.total_steps - step)
                host = [next(self.data) for _ in range(count)]
                batches = data.shard_batch({k: np.stack([b[k] for b in host]) for k in host[0]},
                                           self.mesh, stacked=True)
                state, metrics = self.steps_fn(state, batches)
                unchecked.append((step + 1, metrics))
                step, before = step + count, step
                log_now = crossed(before, step, train.log_every) or step == self.total_steps
                save_now = crossed(before, step, train.checkpoint_every) or step == self.total_steps or stop
                images_now = crossed(before, step, train.images_every)
                if not (log_now or save_now or images_now):
                    continue  # no host sync: the device runs ahead while the next batches load
                for first, values in zip([s for s, _ in unchecked], jax.device_get([m for _, m in unchecked])):
                    for i, host_values in enumerate(unstack_metrics(values)):
                        check_finite(host_values, first + i)
                        for k, v in host_values.items():
                            interval.setdefault(k, []).append(v)
                unchecked.clear()
                if log_now:
                    means = {k: float(np.mean(v)) for k, v in interval.items()}
                    interval.clear()
                    line, rate = progress.line(step, means)
                    logging.info(line)
                    writer.scalars(step, {**means, "learning_rate": float(self.lr_schedule(step - 1)),
                                          "images_per_second": rate})
                if images_now:
                    self.summaries(writer, state, jax.tree_util.tree_map(lambda x: x[-1], batches), step)
                if save_now:
                    self.save(state, step)
                if stop:
                    logging.warning("[%s] signal %d: checkpoint %d written, stopping", self.name,
                                    stop.signal, step)
                    break
        writer.close()
        return state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Run the configured stages into `workdir`, resuming each from its newest checkpoint."""
    config_checks.validate(config, workdir, jax.device_count())
    mesh = data_mesh()
    for stage in config.stages:
        runner = Stage(stage, config, workdir, mesh)
        runner.run(workdir)
        if runner.checkpoints.latest_step() != runner.total_steps:
            return  # stopped by a signal: later stages wait for the rerun
    logging.info("training done: %s", json.dumps(list(config.stages)))
