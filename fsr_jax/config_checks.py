"""Config validation before any work: every problem named with the field to change.

Unknown keys and wrong types are refused by ml_collections while the flags are parsed (the
config is locked); this module checks values and what they need to exist.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import ml_collections

from fsr_jax import checkpointing, config_upgrade, edges, losses, models, stages
from fsr_jax.data.config import problems as data_problems
from fsr_jax.steps import make_optimizer
from fsr_jax.errors import FsrJaxError
from fsr_jax.weights_file import NETS

MODES = ("train", "eval")


class ConfigError(FsrJaxError, ValueError):
    """The config cannot run; the message lists every problem found."""


#: Network sizes that must be positive integers (a zero one fails deep inside the model).
POSITIVE_SIZES = ("model.sr.features", "model.sr.groups", "model.sr.iterations", "model.sr.scale",
                  "model.downsampler.features", "model.downsampler.blocks", "model.discriminator.width",
                  "data.hr_size", "data.lr_size")


def non_finite_numbers(config: ml_collections.ConfigDict) -> list[str]:
    """One line per float field of `config` that is NaN or infinite."""
    return [f"{name} must be a finite number, got {value}" for name, value in _flat(config.to_dict()).items()
            if isinstance(value, float) and not math.isfinite(value)]


def non_positive_sizes(config: ml_collections.ConfigDict) -> list[str]:
    """One line per `POSITIVE_SIZES` field that is not positive."""
    fields = _flat(config.to_dict())
    return [f"{name} must be positive, got {fields[name]}" for name in POSITIVE_SIZES
            if name in fields and not (isinstance(fields[name], (int, float)) and fields[name] > 0)]


def stage_order_problems(names: tuple[str, ...]) -> list[str]:
    """Problems of `config.stages`: none, unknown or repeated stages, or one listed before a
    stage it comes after."""
    known = stages.names()
    if not names:
        return [f"stages must list some of {known}, got ()"]
    problems = []
    unknown = [n for n in names if n not in known]
    if unknown:
        problems.append(f"stages: unknown {unknown}; the stages are {known}")
    if len(set(names)) != len(names):
        problems.append(f"stages must not repeat a stage, got {names!r}")
    for name in (n for n in names if n not in unknown):
        late = [first for first in stages.get(name).after if first in names[names.index(name):]]
        if late:
            problems.append(f"stages: {name!r} comes after {late}, got {names!r}")
    return problems


def validate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, device_count: int) -> None:
    """Raise ConfigError listing every bad value in `config` for a run over `device_count` devices."""
    problems = [*non_finite_numbers(config), *non_positive_sizes(config), *data_problems(config.data)]
    check = problems.append
    if config.mode not in MODES:
        check(f"mode must be one of {MODES}, got {config.mode!r}")
    problems += stage_order_problems(tuple(config.stages))
    sr_net = None
    if not non_positive_sizes(config):
        try:
            sr_net = models.build_sr(config.model)
            models.build_downsampler(config.model)
            models.discriminator_types(config.model.discriminator)
        except ValueError as err:
            check(f"model: {err}")
    for name in config.stages:
        if name not in stages.names():
            continue
        stage = config[name]
        if stage.batch_size <= 0 or stage.batch_size % device_count:
            check(f"{name}.batch_size={stage.batch_size} must be a positive multiple of the "
                  f"{device_count} devices the batch is split over")
        if stage.epochs <= 0:
            check(f"{name}.epochs must be positive, got {stage.epochs}")
        if stage.max_steps < 0:
            check(f"{name}.max_steps must be >= 0 (0: run the configured epochs), got {stage.max_steps}")
        if "gan_loss" in stage and stage.gan_loss not in losses.GAN_LOSSES:
            check(f"{name}.gan_loss must be one of {losses.GAN_LOSSES}, got {stage.gan_loss!r}")
        weights = {k: v for k, v in stage.items() if k.endswith("_weight")}
        check_all = [k for k, v in weights.items() if v < 0]
        if check_all:
            check(f"{name}: loss weights must be >= 0: {', '.join(f'{k}={weights[k]}' for k in check_all)}")
        problems += stages.get(name).problems(config, workdir)
    opt = config.optimizer
    if opt.learning_rate <= 0 or opt.halve_every_epochs <= 0 or not (0 <= opt.b1 < 1 and 0 <= opt.b2 < 1):
        check(f"optimizer: learning_rate and halve_every_epochs must be positive and betas in "
              f"[0, 1), got {dict(opt)}")
    train = config.train
    for key in ("log_every", "images_every", "checkpoint_every", "keep_checkpoints", "steps_per_call"):
        if train[key] <= 0:
            check(f"train.{key} must be positive, got {train[key]}")
    hosted = sr_net.host_priors() if sr_net is not None else []
    if train.steps_per_call > 1 and hosted:
        fields = [f for name in hosted for f in edges.PRIORS[name].implementation_fields]
        settings = ", ".join(f"model.sr.{f}={sr_net.prior_field(f)!r}" for f in fields)
        check(f"train.steps_per_call={train.steps_per_call} needs edge priors computed on the device, "
              f"but {hosted} run through a host callback with {settings}, which a loop of several "
              f"steps on the device cannot run: set train.steps_per_call=1, or change "
              f"{' / '.join(f'model.sr.{f}' for f in fields)}")
    data = config.data
    if data.hr_size != data.lr_size * config.model.sr.scale:
        check(f"data.hr_size ({data.hr_size}) must be data.lr_size ({data.lr_size}) x "
              f"model.sr.scale ({config.model.sr.scale})")
    if (data.hr_dir is None) != (data.lr_dir is None):
        check("data.hr_dir and data.lr_dir go together: set both (your faces) or neither "
              "(the synthetic default)")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


#: Data-iterator state saved with a checkpoint -> the config field that fixes it: a resumed stage
#: must read the same sequence of batches.
DATA_STATE_FIELDS = {"global_batch_size": "{stage}.batch_size", "seed": "seed", "random_flip": "data.random_flip"}


def state_layout(config: ml_collections.ConfigDict, stage: stages.Stage) -> dict[str, tuple[tuple[int, ...], str]]:
    """`checkpointing.layout` of the train state `config` gives `stage` (its frozen parameters
    included), from shapes only: nothing is computed."""
    spec = stages.step_spec(config, stage, steps_per_epoch=1)
    return checkpointing.layout(stages.abstract_state(spec, make_optimizer(spec.optimizer, 1)))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'model.sr.features': 64, ...} of nested dicts (lists for tuples, as in JSON)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def _with_field(config: ml_collections.ConfigDict, field: str, value: Any) -> ml_collections.ConfigDict:
    """A copy of `config` with `field` (dotted) set to `value` (a JSON value)."""
    copy = config.copy_and_resolve_references()
    *parents, leaf = field.split(".")
    section = copy
    for name in parents:
        section = section[name]
    with copy.unlocked():
        current = section[leaf]
        section[leaf] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
    return copy


def _shape_fields(config: ml_collections.ConfigDict, stage: stages.Stage, arrays: dict, saved: dict,
                  now: dict) -> list[str]:
    """The fields among `model`, `data.hr_size`, `data.lr_size` and the stage's section that
    differ between `saved` (config.json) and `now` (`config` as JSON), and change the stage's
    state on their own: `config` with just that field back at its saved value has another
    layout than `arrays` (`config`'s)."""
    old, new = _flat(saved), _flat(now)
    candidates = sorted(k for k in new if (k.startswith(("model.", f"{stage.name}.")) or k in (
        "data.hr_size", "data.lr_size")) and k in old and old[k] != new[k])
    fields = []
    for field in candidates:
        try:
            changes = state_layout(_with_field(config, field, old[field]), stage) != arrays
        except (ValueError, TypeError, AttributeError, KeyError):  # e.g. sizes that no longer fit together
            changes = True
        if changes:
            fields.append(field)
    return fields


def _layout_differences(saved: dict, now: dict, limit: int = 3) -> str:
    """The first arrays whose shapes differ between a checkpoint and the config's state,
    parameters before optimizer states."""
    lines = []
    for key in sorted(set(saved) | set(now), key=lambda k: (".opt_state." in k, k)):
        if saved.get(key) != now.get(key):
            was = f"{saved[key][0]}" if key in saved else "absent"
            becomes = f"{now[key][0]}" if key in now else "absent"
            lines.append(f"{key} {was} in the checkpoint, {becomes} now")
    more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def check_resume(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    """Raise ConfigError when `config` no longer fits the checkpoints a stage of `workdir`
    already has: networks of other shapes (the fields responsible, from the stage's config.json)
    or another batch size, seed or flip setting (they fix the sequence of batches). One message
    lists every such field of every stage; nothing is written."""
    now = json.loads(config.to_json_best_effort())
    fields: dict[str, tuple[Any, Any, list[str]]] = {}
    problems = []
    for name in config.stages:
        stage = stages.get(name)
        folder = pathlib.Path(workdir) / name
        found = checkpointing.saved_layout(folder / "checkpoints")
        if found is None:
            continue
        step, saved_arrays, data_state = found
        try:
            saved = config_upgrade.upgrade(json.loads((folder / "config.json").read_text())).to_dict()
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable, or no model section
            saved = None
        for key, field in DATA_STATE_FIELDS.items():
            field = field.format(stage=name)
            old = data_state.get(key) if data_state else _flat(saved or {}).get(field)
            value = _flat(now)[field]
            if old is not None and old != value:
                problems.append(f"{field}={value}, but checkpoint {step} in {folder} was trained with "
                                f"{old}: resume with --config.{field}={old}, or train in a new --workdir")
        arrays = state_layout(config, stage)
        if arrays == saved_arrays:
            continue
        differing = _shape_fields(config, stage, arrays, saved, now) if saved else []
        for field in differing:
            fields.setdefault(field, (_flat(saved)[field], _flat(now)[field], []))[2].append(name)
        if not differing:
            source = ("its config.json does not explain it" if saved else
                      f"there is no readable {folder / 'config.json'}")
            problems.append(f"the networks of {name} differ from checkpoint {step} in {folder} ({source}): "
                            f"{_layout_differences(saved_arrays, arrays)}")
    problems = [f"{field}={new}, but the checkpoints were trained with {old} (it changes the networks of "
                f"{', '.join(names)})" for field, (old, new, names) in sorted(fields.items())] + problems
    if problems:
        raise ConfigError(f"the config does not fit the checkpoints in {workdir}; nothing was changed. "
                          f"Rerun with the values the checkpoints were trained with, or train in a new "
                          f"--workdir:\n  - " + "\n  - ".join(problems))


def validate_eval(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError listing every bad value in the `eval` section."""
    ev = config.eval
    problems = []
    for key in ("step", "max_images", "fid_reference_images", "grid_faces"):
        if ev[key] < 0:
            problems.append(f"eval.{key} must be >= 0, got {ev[key]}")
    if ev.batch_size <= 0:
        problems.append(f"eval.batch_size must be positive, got {ev.batch_size}")
    if ev.max_images == 1 or ev.fid_reference_images == 1:
        problems.append("eval.max_images and eval.fid_reference_images must not be 1: FID needs "
                        "at least 2 faces (0: all)")
    if ev.step and ev.weights:
        problems.append(f"eval.step={ev.step} picks a checkpoint and eval.weights={ev.weights!r} gives "
                        f"weights files instead: set one of them")
    if not ev.nets or any(n not in NETS for n in ev.nets):
        problems.append(f"eval.nets must name some of {tuple(NETS)}, got {tuple(ev.nets)!r}")
    if problems:
        raise ConfigError("invalid eval config:\n  - " + "\n  - ".join(problems))
