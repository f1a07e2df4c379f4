"""The training loop every stage runs: data-parallel over every device, checkpointed, resumable.

`train_and_evaluate(config, workdir)` runs the stages `config.stages` names, in order, each in
its own folder W/<stage> (checkpoints/, metrics.jsonl, tensorboard/, images/, config.json).
What a stage trains and how is its own (fsr_jax.stages); this loop knows none by name.
Rerunning resumes every stage from its newest checkpoint; a finished stage is skipped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import pathlib
import shlex
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from fsr_jax import checkpointing, config_checks, cost, data, files, grids, progress, run_lock, stages, summaries
from fsr_jax.mesh import data_mesh, replicated, wait_for_every_process
from fsr_jax.stages import StepSpec
from fsr_jax.errors import FsrJaxError
from fsr_jax.stopping import Stopper
from fsr_jax.steps import TrainState, learning_rate_schedule, make_optimizer, scan_steps


#: A progress line at least this often (seconds), whatever `train.log_every` says, so that a slow
#: step (full-size networks on a CPU) still shows the run is alive.
PROGRESS_EVERY_S = 60.0


class NonFiniteLossError(FsrJaxError, FloatingPointError):
    """A loss term became NaN or Inf; the message names the term and the step."""


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


class Due(NamedTuple):
    """What a call boundary owes: a progress line, image grids, a checkpoint."""

    log: bool
    images: bool
    save: bool


@dataclasses.dataclass(frozen=True)
class Cadence:
    """When a stage logs, draws grids and saves, from `train.log_every`, `images_every`,
    `checkpoint_every` and its length: at the first call boundary past each multiple; a line
    also after the first call, at the end and at least every `PROGRESS_EVERY_S` seconds; a
    checkpoint also at the end and when stopping."""

    log_every: int
    images_every: int
    checkpoint_every: int
    total_steps: int

    @classmethod
    def of(cls, train_cfg: ml_collections.ConfigDict, total_steps: int) -> Cadence:
        return cls(train_cfg.log_every, train_cfg.images_every, train_cfg.checkpoint_every, total_steps)

    def due(self, before: int, step: int, first_call: bool, seconds_since_line: float, stopping: bool) -> Due:
        """What the call that took the step count from `before` to `step` owes."""
        last = step == self.total_steps
        return Due(log=(first_call or last or crossed(before, step, self.log_every)
                        or seconds_since_line > PROGRESS_EVERY_S),
                   images=crossed(before, step, self.images_every),
                   save=last or stopping or crossed(before, step, self.checkpoint_every))


def unstack_metrics(metrics: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """One call's metrics, each (K,), as K dicts of floats, one per step in order."""
    count = len(next(iter(metrics.values())))
    return [{k: float(v[i]) for k, v in metrics.items()} for i in range(count)]


@functools.lru_cache(maxsize=4)
def compiled(spec: StepSpec, mesh):
    """(optimizer, jitted steps, jitted preview) of a stage, built once per process for a step
    spec, so that a rerun in the same process (tests, notebooks, the benchmark) reuses the
    compilation.

    The steps function runs K steps in one call: (state, K stacked batches) -> (state, metrics
    with a leading K axis); it compiles once per K. The state is donated.
    """
    stage = spec.stage
    tx = make_optimizer(spec.optimizer, spec.steps_per_epoch)
    repl = replicated(mesh)
    steps = jax.jit(scan_steps(stage.step(spec, tx)), donate_argnums=0, out_shardings=(repl, repl))
    preview = jax.jit(stage.preview(spec), out_shardings=repl)
    return tx, steps, preview


class StageRun:
    """One stage's run: its data (`next_batches`), state (`initial_state`, `save`), compiled steps
    (`compile`) and the loop (`run`) that hands each call's metrics to its `Reports`."""

    def __init__(self, stage: stages.Stage, config: ml_collections.ConfigDict, workdir: str, mesh):
        self.stage, self.name, self.config, self.mesh = stage, stage.name, config, mesh
        self.cfg = config[stage.name]
        self.dir = pathlib.Path(workdir) / stage.name
        self.data = data.make_train_iterator(
            config.data, global_batch_size=self.cfg.batch_size, seed=config.seed,
            process_index=jax.process_index(), process_count=jax.process_count())
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = stages.total_steps(config, stage, self.data.order.num_hr)
        self.lr_schedule = learning_rate_schedule(config.optimizer, self.steps_per_epoch)
        self.primary = jax.process_index() == 0
        self.checkpoints = checkpointing.manager(self.dir / "checkpoints", config.train.keep_checkpoints)
        self.spec = stages.step_spec(config, stage, self.steps_per_epoch)
        self.tx, self.steps_fn, self.preview = compiled(self.spec, mesh)

    def initial_state(self, workdir: str) -> tuple[TrainState, int]:
        """The newest checkpoint's state (and the data position restored), else a fresh one. The
        parameters a stage takes frozen are read from their own checkpoints only for a fresh
        state: a checkpoint of the stage holds them."""
        repl = replicated(self.mesh)
        if self.checkpoints.latest_step() is None:
            frozen = self.stage.load_frozen(self.config, workdir)
            fresh = functools.partial(stages.init_state, self.spec, self.tx, self.config.seed)
            return jax.jit(fresh, out_shardings=repl)(frozen), 0
        abstract = stages.abstract_state(self.spec, self.tx, self.config.seed)
        abstract = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl), abstract)
        state, data_state, step = checkpointing.restore(self.checkpoints, abstract)
        try:
            self.data.set_state(data_state)
        except ValueError as err:  # e.g. faces added to the training set since
            raise config_checks.ConfigError(
                f"checkpoint {step} in {self.checkpoints.directory} was trained on other data: {err}; "
                f"resume with the same data, or train in a new --workdir") from err
        logging.info("[%s] resumed from checkpoint %d in %s", self.name, step, self.checkpoints.directory)
        return state, step

    def save(self, state: TrainState, step: int) -> None:
        params_finite = jax.tree_util.tree_reduce(
            lambda ok, x: ok and bool(jnp.all(jnp.isfinite(x))), state.nets, True)
        if not params_finite:
            raise NonFiniteLossError(f"parameters are not finite at step {step}; not saving")
        checkpointing.save(self.checkpoints, step, state, self.data.get_state())
        logging.info("[%s] checkpoint %d written", self.name, step)

    def compile(self, count: int, state: TrainState, batches, stop: Stopper):
        """The compiled call of `count` steps, announced and timed; the main thread keeps
        handling signals meanwhile (a stop during compilation ends the run at once)."""
        what = f"[{self.name}] compiling the training step" + (f" ({count} steps per call)" if count > 1 else "")
        record = self.dir / "compile_seconds.json"
        seen = json.loads(record.read_text()) if record.is_file() else {}
        hint = (f"about {seen[str(count)]:.0f} s last time" if str(count) in seen else
                "one-off; minutes on a CPU for full-size networks, then cached on disk")
        logging.info("%s (%s)", what, hint)
        start = time.perf_counter()
        compiled_call = stop.wait(lambda: self.steps_fn.lower(state, batches).compile())
        stop.wait(lambda: wait_for_every_process(f"{self.name}-compiled-{count}"))
        seconds = time.perf_counter() - start
        logging.info("%s: done in %.1f s", what, seconds)
        if self.primary:
            files.write_text(record, json.dumps({**seen, str(count): round(seconds, 1)}))
        return compiled_call

    def next_batches(self, count: int) -> dict:
        """The next `count` batches of the stage's data, stacked (K, B, ...) and split over the mesh."""
        host = [next(self.data) for _ in range(count)]
        return data.shard_batch({k: np.stack([b[k] for b in host]) for k in host[0]}, self.mesh, stacked=True)

    def run(self, workdir: str, stop: Stopper, later=None) -> TrainState:
        """Train from the newest checkpoint to `total_steps`; a stop signal saves and returns.

        The loop runs at most one call ahead of the device: after dispatching call i it waits
        for call i-1's metrics, so a stop is honoured within about one call. `later(seconds per
        step)`: predicted seconds of the stages after this one, for the progress line's ETA.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        state, step = self.initial_state(workdir)
        if self.primary:  # only now: a config the checkpoints refuse must not replace theirs
            files.write_text(self.dir / "config.json", self.config.to_json_best_effort(indent=2))
        if step >= self.total_steps:
            logging.info("[%s] finished earlier (step %d of %d)", self.name, step, self.total_steps)
            return state
        logging.info("[%s] %d steps (%d per epoch) at global batch %d over %d devices, from step %d",
                     self.name, self.total_steps, self.steps_per_epoch, self.cfg.batch_size,
                     jax.device_count(), step)
        reports = Reports(self, step, later)
        train = self.config.train
        cadence = Cadence.of(train, self.total_steps)
        programs: dict[int, Any] = {}
        pending = None            # (first step, device metrics) of the call before the newest
        stop.in_loop = False      # until the first call runs, a stop has nothing new to save
        try:
            with jax.set_mesh(self.mesh):
                while step < self.total_steps:
                    count = min(train.steps_per_call, self.total_steps - step)
                    batches = self.next_batches(count)
                    if count not in programs:
                        programs[count] = self.compile(count, state, batches, stop)
                    stop.check()
                    state, metrics = programs[count](state, batches)
                    if pending is not None:
                        reports.add(*pending)
                    pending, first_call = (step + 1, metrics), not stop.in_loop
                    step, before = step + count, step
                    stop.in_loop = True
                    stopping = stop.agreed()
                    due = cadence.due(before, step, first_call, reports.seconds_since_line(), stopping)
                    if not any(due):
                        continue
                    reports.add(*pending)
                    pending = None
                    if due.log:
                        reports.log(step, first_call)
                    if due.images:
                        reports.images(state, jax.tree_util.tree_map(lambda x: x[-1], batches), step)
                    if due.save:
                        self.save(state, step)
                    if stopping:
                        logging.warning("[%s] %s: checkpoint %d written, stopping", self.name, stop.reason, step)
                        break
        except BaseException:  # no writer thread outlives its run; the error in flight is the one to report
            stop.in_loop = False
            with contextlib.suppress(OSError):
                reports.close()
            raise
        stop.in_loop = False
        reports.close()
        return state


class Reports:
    """What a stage's run reports, as the loop hands it each call's metrics: every step's loss
    terms fetched and NaN-checked (`add`), averaged into a progress line and scalar summaries
    (`log`), and the stage's preview grids (`images`); written into W/<stage> by the primary
    process only."""

    def __init__(self, run: StageRun, resume_step: int, later=None):
        self.run = run
        self.writer = summaries.SummaryWriter(run.dir, enabled=run.primary, resume_step=resume_step)
        self.progress = progress.Progress(run.name, run.total_steps, run.steps_per_epoch, run.cfg.batch_size, later)
        self.interval: dict[str, list[float]] = {}

    def seconds_since_line(self) -> float:
        return self.progress.seconds_since_line()

    def add(self, first: int, metrics) -> None:
        """Fetch one call's metrics (waiting for that call), NaN-check each step from `first`, keep them."""
        for i, host_values in enumerate(unstack_metrics(jax.device_get(metrics))):
            check_finite(host_values, first + i)
            for k, v in host_values.items():
                self.interval.setdefault(k, []).append(v)

    def log(self, step: int, first_call: bool) -> None:
        """The progress line and scalar summaries of the steps kept since the last one; after the
        first call also what each loss term means, and the timing starts."""
        means = {k: float(np.mean(v)) for k, v in self.interval.items()}
        self.interval.clear()
        line, rate = self.progress.line(step, means)
        logging.info(line)
        if first_call:
            logging.info("[%s] %s", self.run.name, progress.explain_terms(means, self.run.stage.term_meanings))
            self.progress.start(step)
        self.writer.scalars(step, {**means, "learning_rate": float(self.run.lr_schedule(step - 1)),
                                   **({"images_per_second": rate} if rate else {})})

    def images(self, state: TrainState, batch, step: int) -> None:
        """The stage's preview grids of `batch`, titled, as image summaries."""
        previews = jax.device_get(self.run.preview(state, batch))
        titles = self.run.stage.grid_titles(self.run.spec)
        self.writer.images(step, {f"{self.run.name}/{name}": grids.titled_grid(cols, titles.get(name))
                                  for name, cols in previews.items()})

    def close(self) -> None:
        self.writer.close()


def steps_left(config: ml_collections.ConfigDict, workdir: str, run: list[stages.Stage],
               num_hr: int) -> dict[str, int]:
    """Steps still to train per stage of `run`, by name (its newest checkpoint read from `workdir`)."""
    left = {}
    for stage in run:
        done = checkpointing.latest_step(pathlib.Path(workdir) / stage.name / "checkpoints") or 0
        left[stage.name] = max(stages.total_steps(config, stage, num_hr) - done, 0)
    return left


def stage_flops(config: ml_collections.ConfigDict, run: list[stages.Stage]) -> dict[str, float]:
    """FLOPs per step of each stage of `run` at its batch size, by name (stages XLA gives no figure for left out)."""
    flops = {stage.name: cost.step_flops(stage, config, config[stage.name].batch_size) for stage in run}
    return {name: f for name, f in flops.items() if f}


def smoke_command(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The command that trains the tiny smoke config on the same data, beside `workdir`."""
    defaults = data.default_config()
    data_flags = [f"--config.data.{field}={shlex.quote(str(config.data[field]))}"
                  for field in ("hr_dir", "lr_dir", "tfds_dir") if config.data.get(field, defaults[field]) != defaults[field]]
    smoke_workdir = shlex.quote(str(pathlib.Path(workdir).expanduser()).rstrip("/") + "_smoke")
    return " ".join(["python -m fsr_jax.main --config configs/smoke.py --workdir", smoke_workdir, *data_flags])


def warn_if_cpu_run_is_long(left: dict[str, int], flops: dict[str, float], config: ml_collections.ConfigDict,
                            workdir: str) -> None:
    """On a machine without an accelerator, one line when the run would take over an hour:
    the predicted time and the smoke config's command on the same data."""
    if jax.default_backend() != "cpu" or len(flops) != len(left):
        return
    seconds = cost.cpu_seconds(sum(left[s] * flops[s] for s in left) / jax.process_count())
    if seconds > 3600:
        logging.warning(
            "no accelerator: this config's %s steps would take roughly %s on this CPU; for a quick "
            "look train the tiny smoke config on the same data: %s", "+".join(str(n) for n in left.values()),
            progress.format_seconds(seconds), smoke_command(config, workdir))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, stop: Stopper | None = None) -> None:
    """Run the configured stages into `workdir`, resuming each from its newest checkpoint.

    `stop`: the process's signal handling (installed here for the run when not given)."""
    config_checks.validate(config, workdir, jax.device_count())
    if stop is None:
        with Stopper() as own:
            return train_and_evaluate(config, workdir, own)
    config_checks.check_resume(config, workdir)  # reads only: a refused config leaves the workdir as it was
    with run_lock.hold(workdir, enabled=jax.process_index() == 0):
        train_stages(config, workdir, stop)


def train_stages(config: ml_collections.ConfigDict, workdir: str, stop: Stopper) -> None:
    """The body of `train_and_evaluate`, the config checked against the workdir, which is held."""
    mesh = data_mesh()
    run = [stages.get(name) for name in config.stages]   # the stage objects, resolved once
    left, flops = None, {}
    for index, stage in enumerate(run):
        runner = StageRun(stage, config, workdir, mesh)
        if left is None:
            left = steps_left(config, workdir, run, runner.data.order.num_hr)
            if sum(1 for n in left.values() if n) > 1 or jax.default_backend() == "cpu":
                start = time.perf_counter()
                flops = stage_flops(config, [s for s in run if left[s.name]])
                logging.info("each stage's FLOPs per step, for the ETA: %s (%.0f s to count)",
                             ", ".join(f"{s} {f / 1e9:.1f} G" for s, f in flops.items()),
                             time.perf_counter() - start)
            warn_if_cpu_run_is_long({s: n for s, n in left.items() if n}, flops, config, workdir)
        later_steps = {s.name: left[s.name] for s in run[index + 1:] if left[s.name]}
        later = None
        if later_steps and stage.name in flops and all(s in flops for s in later_steps):
            later = functools.partial(cost.predicted_seconds, later_steps, flops, stage.name)
        runner.run(workdir, stop, later)
        if runner.checkpoints.latest_step() != runner.total_steps or stop.agreed():
            return  # stopped by a signal: later stages wait for the rerun
    logging.info("training done: %s", json.dumps(list(config.stages)))
