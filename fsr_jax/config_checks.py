"""Config validation before any work: every problem named with the field to change.

Unknown keys and wrong types are refused by ml_collections while the flags are parsed (the
config is locked); this module checks values and what they need to exist.
"""
from __future__ import annotations

import pathlib

import ml_collections

from fsr_jax import checkpointing, losses, models
from fsr_jax.inference import SR_NETS
from fsr_jax.steps import STAGE1, STAGE2

MODES = ("train", "eval")
TEACHERS = ("denet", "bicubic", "cycle")


class ConfigError(ValueError):
    """The config cannot run; the message lists every problem found."""


def denet_checkpoints(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """The checkpoints folder stage 2 takes DeNet from: `stage2.denet_checkpoint` (a run's
    workdir, its stage-1 folder, or that folder's checkpoints/), else this run's
    W/degradation/checkpoints."""
    given = config.stage2.denet_checkpoint
    if not given:
        return pathlib.Path(workdir) / STAGE1 / "checkpoints"
    folder = pathlib.Path(given).expanduser()
    if folder.name == "checkpoints":
        return folder
    if (folder / STAGE1 / "checkpoints").is_dir():
        return folder / STAGE1 / "checkpoints"
    return folder / "checkpoints"


def needs_denet(config: ml_collections.ConfigDict) -> bool:
    """Stage 2 reads a trained DeNet when it runs with the paper's DeNet pairs."""
    return STAGE2 in config.stages and config.stage2.teacher == "denet"


def validate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, device_count: int) -> None:
    """Raise ConfigError listing every bad value in `config` for a run over `device_count` devices."""
    problems = []
    check = problems.append
    if config.mode not in MODES:
        check(f"mode must be one of {MODES}, got {config.mode!r}")
    stages = tuple(config.stages)
    if not stages or any(s not in (STAGE1, STAGE2) for s in stages) or list(stages) != sorted(
            stages, key=(STAGE1, STAGE2).index) or len(set(stages)) != len(stages):
        check(f"stages must be ({STAGE1!r}, {STAGE2!r}) or one of them, got {stages!r}")
    try:
        models.build_sr(config.model), models.build_downsampler(config.model)
    except ValueError as err:
        check(f"model: {err}")
    for name in ("stage1", "stage2"):
        stage = config[name]
        if stage.batch_size <= 0 or stage.batch_size % device_count:
            check(f"{name}.batch_size={stage.batch_size} must be a positive multiple of the "
                  f"{device_count} devices the batch is split over")
        if stage.epochs <= 0:
            check(f"{name}.epochs must be positive, got {stage.epochs}")
        if stage.max_steps < 0:
            check(f"{name}.max_steps must be >= 0 (0: run the configured epochs), got {stage.max_steps}")
        if stage.gan_loss not in losses.GAN_LOSSES:
            check(f"{name}.gan_loss must be one of {losses.GAN_LOSSES}, got {stage.gan_loss!r}")
        weights = {k: v for k, v in stage.items() if k.endswith("_weight")}
        check_all = [k for k, v in weights.items() if v < 0]
        if check_all:
            check(f"{name}: loss weights must be >= 0: {', '.join(f'{k}={weights[k]}' for k in check_all)}")
    if config.stage2.teacher not in TEACHERS:
        check(f"stage2.teacher must be one of {TEACHERS}, got {config.stage2.teacher!r}")
    if needs_denet(config) and STAGE1 not in stages:
        folder = denet_checkpoints(config, workdir)
        if checkpointing.latest_step(folder) is None:
            check(f"stage 2 needs a trained DeNet, and there is no stage-1 checkpoint in {folder}: "
                  f"set stage2.denet_checkpoint to a stage-1 workdir, or train stage 1 first")
    opt = config.optimizer
    if opt.learning_rate <= 0 or opt.halve_every_epochs <= 0 or not (0 <= opt.b1 < 1 and 0 <= opt.b2 < 1):
        check(f"optimizer: learning_rate and halve_every_epochs must be positive and betas in "
              f"[0, 1), got {dict(opt)}")
    train = config.train
    for key in ("log_every", "images_every", "checkpoint_every", "keep_checkpoints", "steps_per_call"):
        if train[key] <= 0:
            check(f"train.{key} must be positive, got {train[key]}")
    if train.steps_per_call > 1 and config.model.sr.canny_impl == "opencv":
        check(f"train.steps_per_call={train.steps_per_call} needs model.sr.canny_impl='jax': the "
              f"'opencv' Canny is a host callback, which cannot run inside a loop of several steps "
              f"on the device (set train.steps_per_call=1, or canny_impl='jax')")
    data = config.data
    if data.hr_size != data.lr_size * config.model.sr.scale:
        check(f"data.hr_size ({data.hr_size}) must be data.lr_size ({data.lr_size}) x "
              f"model.sr.scale ({config.model.sr.scale})")
    if (data.hr_dir is None) != (data.lr_dir is None):
        check("data.hr_dir and data.lr_dir go together: set both (your faces) or neither "
              "(the synthetic default)")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


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
    if any(n not in SR_NETS for n in ev.nets):
        problems.append(f"eval.nets must name some of {SR_NETS}, got {tuple(ev.nets)!r}")
    if problems:
        raise ConfigError("invalid eval config:\n  - " + "\n  - ".join(problems))
