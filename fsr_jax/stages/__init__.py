"""Training stages as objects found by name: `get('teacher_student')`.

A stage is a module `fsr_jax/stages/<name>.py` with a `STAGE` object (a `Stage`) that declares
the networks it trains (and which input each takes), the parameters it takes
frozen, its loss settings, its step (composed from one update per GAN pair) and its preview.
`config.stages` lists the stages to run, in order; the training loop (fsr_jax.train) knows none
of them by name. Adding a stage is one module here and a config that lists it; a stage defined
elsewhere (your own package, a notebook) is made findable with `register(stage)`.

What a stage's jitted functions depend on is one hashable `StepSpec`, built from the config in
`step_spec` and nowhere else; compiled programs are cached by it.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pathlib
import pkgutil
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fsr_jax.registry import Registry
from fsr_jax.steps import Metrics, Modules, NetState, OptimizerSpec, TrainState

#: (state, batch) -> {grid name: list of panels (N, S, S, 3) in [0, 1]}, for image summaries.
Preview = Callable[[TrainState, dict[str, jax.Array]], dict[str, list[jax.Array]]]
#: (state, batch) -> (state, metrics): one training step.
Step = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, Metrics]]


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Exactly what a stage's jitted step and preview depend on (hashable).

    stage: the stage itself (resolved from its name once, where the config is read); modules:
    the networks' Flax modules (`TrainState.nets` holds their states); optimizer, steps_per_epoch: Adam and its
    schedule; scale: the SR factor; hr_size, lr_size: face sizes in pixels; summary_images:
    faces per preview grid; settings: the stage's own loss settings (its `Settings` dataclass).
    """

    stage: Stage
    modules: Modules
    optimizer: OptimizerSpec
    steps_per_epoch: int
    scale: int
    hr_size: int
    lr_size: int
    summary_images: int
    settings: Any


class Stage:
    """One training stage; subclasses fill in the class attributes and methods.

    name: the stage's one name: in `config.stages`, its config section `config.<name>`
      (batch_size, epochs, max_steps and its loss settings), its module and its workdir folder.
    after: stages that must come before it when a config runs both.
    term_meanings: what each logged loss term measures.
    """

    name: str
    after: tuple[str, ...] = ()
    #: What each loss term the step logs measures, by the last part of its name (the progress
    #: log explains them once); the GAN terms every stage has, then the stage's own.
    term_meanings: dict[str, str] = {
        "adv": "generator GAN loss (logistic: 0.693 = ln 2 when D is at chance)",
        "loss": "discriminator GAN loss (logistic: 1.386 = 2 ln 2 at chance, lower = D wins)",
    }

    def settings(self, section: ml_collections.ConfigDict) -> Any:
        """The stage's loss settings from its config section, as a frozen dataclass."""
        raise NotImplementedError

    def problems(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[str]:
        """Config problems particular to this stage, one line each (generic ones, such as the
        batch size, are checked for every stage by fsr_jax.config_checks)."""
        return []

    def networks(self, spec: StepSpec) -> dict[str, tuple[nn.Module, str]]:
        """Trainable networks: name -> (module, 'hr' or 'lr', the input it takes)."""
        raise NotImplementedError

    def init_frozen(self, spec: StepSpec, key: jax.Array) -> dict[str, Any]:
        """Randomly initialised stand-ins of the parameters it takes frozen (their shapes are
        what matters: checkpoint layouts, FLOP counts, benchmarks); {} when it takes none."""
        return {}

    def load_frozen(self, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
        """The trained parameters it takes frozen, read from their checkpoints (host arrays)."""
        return {}

    def step(self, spec: StepSpec, tx: optax.GradientTransformation) -> Step:
        """The (unjitted) training step."""
        raise NotImplementedError

    def preview(self, spec: StepSpec) -> Preview:
        """The (unjitted) image-summary function."""
        raise NotImplementedError

    def grid_titles(self, spec: StepSpec) -> dict[str, list[str]]:
        """{grid name: a title per column} of the preview's grids, drawn above them; a grid
        missing here is drawn without titles."""
        return {}


#: Stages defined outside this package, by name (`register`).
_REGISTERED: Registry[Stage] = Registry("stage")


@functools.cache
def _modules() -> frozenset[str]:
    """This package's stage modules (read from disk once: they do not change while running)."""
    return frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def names() -> tuple[str, ...]:
    """Every stage: this package's modules and the registered stages, sorted."""
    return tuple(sorted(_modules() | set(_REGISTERED)))


def register(stage: Stage) -> Stage:
    """Make a stage defined outside this package findable by its name; ValueError when the name
    is taken. `unregister(name)` undoes it."""
    if stage.name in names():
        raise ValueError(f"a stage named {stage.name!r} exists already")
    return _REGISTERED.register(stage.name, stage)


def unregister(name: str) -> None:
    """Forget a stage `register` added."""
    _REGISTERED.unregister(name)


def get(name: str) -> Stage:
    """The stage called `name`; ValueError listing the known stages when there is none."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _modules():
        raise ValueError(f"unknown stage {name!r}; the stages are {names()}")
    return importlib.import_module(f"{__name__}.{name}").STAGE


def total_steps(config: ml_collections.ConfigDict, stage: Stage, num_hr: int) -> int:
    """A stage's length: `max_steps`, else its epochs over `num_hr` HR faces in full batches."""
    cfg = config[stage.name]
    return cfg.max_steps or cfg.epochs * (num_hr // cfg.batch_size)


def step_spec(config: ml_collections.ConfigDict, stage: Stage, steps_per_epoch: int) -> StepSpec:
    """The StepSpec of `stage` under `config`: the one place a step's inputs are read."""
    return StepSpec(
        stage=stage, modules=Modules.from_config(config.model),
        optimizer=OptimizerSpec.from_config(config.optimizer), steps_per_epoch=steps_per_epoch,
        scale=int(config.model.sr.scale), hr_size=int(config.data.hr_size),
        lr_size=int(config.data.lr_size), summary_images=int(config.train.summary_images),
        settings=stage.settings(config[stage.name]))


def init_state(spec: StepSpec, tx: optax.GradientTransformation, seed: int,
               frozen: dict[str, Any] | None = None) -> TrainState:
    """Random initial state of a stage (each network from its own fold of the seed key, in the
    order of their sorted names), holding `frozen` as the parameters it takes frozen."""
    key = jax.random.key(seed)
    shapes = {"hr": (1, spec.hr_size, spec.hr_size, 3), "lr": (1, spec.lr_size, spec.lr_size, 3)}
    states = {}
    networks = spec.stage.networks(spec)
    for i, (name, (module, kind)) in enumerate(sorted(networks.items())):
        params = module.init(jax.random.fold_in(key, i), jnp.zeros(shapes[kind]))["params"]
        states[name] = NetState(params, tx.init(params))
    return TrainState(jnp.zeros((), jnp.int32), jax.random.key_data(key), states, frozen or {})


def abstract_state(spec: StepSpec, tx: optax.GradientTransformation, seed: int = 0) -> TrainState:
    """Shapes and dtypes of a stage's initial TrainState (frozen parameters included), as
    jax.ShapeDtypeStruct leaves: nothing is initialised."""
    return jax.eval_shape(lambda: init_state(spec, tx, seed, spec.stage.init_frozen(spec, jax.random.key(0))))
