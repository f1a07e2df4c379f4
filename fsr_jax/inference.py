"""Super-resolution with a trained run: its SR networks restored from W/teacher_student or
exported weights files (`load_trained_sr`, what every command that runs a trained net uses) and
applied to uint8 faces in fixed-size batches, the PIL-bicubic baseline, and reading face files.
DeNet, the degradation net, is loaded the same way (`load_trained_denet`).

Imports and runs without TensorFlow or TFDS (accelerator hosts often have neither).
"""
from __future__ import annotations

import functools
import json
import pathlib
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging
from PIL import Image

from fsr_jax import checkpointing, config_upgrade, models, weights_file
from fsr_jax.config_checks import ConfigError
from fsr_jax.data import images
from fsr_jax.data.config import MAX_IMAGE_PIXELS
from fsr_jax.stages.degradation import STAGE as DEGRADATION
from fsr_jax.stages.teacher_student import STAGE as TEACHER_STUDENT
from fsr_jax.weights_file import SR_NETS, WeightsError


def stage_dir(workdir: str | pathlib.Path, stage: str = TEACHER_STUDENT.name) -> pathlib.Path:
    """W/<stage>, by default W/teacher_student: the stage folder holding the SR networks' checkpoints."""
    return pathlib.Path(workdir).expanduser() / stage


def run_config(workdir: str | pathlib.Path, stage: str = TEACHER_STUDENT.name) -> ml_collections.ConfigDict:
    """The config a run's stage (by default stage 2) was trained with (W/<stage>/config.json), in
    today's field names (`config_upgrade.upgrade`: older runs say `stage2`, `sr.steps`).

    Tuples come back as lists (JSON has no tuples).

    Raises:
      CheckpointError: naming the file, when it is missing, not JSON, or holds a model this
        version cannot build.
    """
    path = stage_dir(workdir, stage) / "config.json"
    try:
        return config_upgrade.upgrade(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise checkpointing.CheckpointError(
            f"cannot read the run's config {path} (is {workdir} a trained workdir?): {err}") from err


def load_sr_networks(workdir: str | pathlib.Path, names: tuple[str, ...] = SR_NETS,
                     step: int | None = None) -> tuple[dict[str, dict], int]:
    """({name: host params} of the SR networks among `names` that checkpoint `step` (default:
    the newest) of W/teacher_student holds, in the order of `names`; the step). Networks a run
    lacks (cycle_teacher: no SNet) are left out; no optimizer state is read.

    Raises:
      CheckpointError: naming the folder, when it has no such checkpoint, it is unreadable, or
        it holds none of `names`.
    """
    folder = stage_dir(workdir) / "checkpoints"
    saved, step = checkpointing.saved_networks(folder, step)
    present = tuple(n for n in names if n in saved)
    if not present:
        raise checkpointing.CheckpointError(
            f"checkpoint {step} in {folder} holds none of the networks {list(names)} (it has {list(saved)})")
    return checkpointing.restore_params(folder, present, step)


class TrainedNet(NamedTuple):
    """One trained network ready to run: its `model` (module), host `params`, the checkpoint
    `step` they come from, their `origin` (a workdir or weights file, as given) and `meta`: a
    weights file's metadata (`weights_file.load_weights`), or for a checkpoint the same keys
    net, step, model (the run's section) and data (lr_size, hr_size)."""

    model: Any
    params: Any
    step: int
    origin: str
    meta: dict


class TrainedSR(NamedTuple):
    """Trained SR networks ready to run (`load_trained_sr`).

    Attributes:
      model: the FeedbackSR module of their layout.
      params: {net: host params}, in the order of the `names` asked for.
      steps: {net: the checkpoint step its parameters come from}.
      origins: {net: the workdir or weights file it was read from, as given}.
      lr_size: the LR face size the networks were trained on.
    """

    model: models.FeedbackSR
    params: dict[str, Any]
    steps: dict[str, int]
    origins: dict[str, str]
    lr_size: int

    @property
    def step(self) -> int | None:
        """The checkpoint step of every net; None when they come from different steps."""
        steps = set(self.steps.values())
        return steps.pop() if len(steps) == 1 else None

    @classmethod
    def from_files(cls, loaded: dict[str, TrainedNet]) -> TrainedSR:
        """The SR nets of `load_weights_files`' result (which share one layout)."""
        first = next(iter(loaded.values()))
        return cls(first.model, {n: t.params for n, t in loaded.items()}, {n: t.step for n, t in loaded.items()},
                   {n: t.origin for n, t in loaded.items()}, int(first.meta["data"]["lr_size"]))

    def describe(self, net: str) -> str:
        """'<net> of <workdir or file> (checkpoint <step>)'."""
        return f"{net} of {self.origins[net]} (checkpoint {self.steps[net]})"


def load_weights_files(weights: Sequence[str | pathlib.Path], names: Sequence[str],
                       model_config: ml_collections.ConfigDict | None = None,
                       data_config: Any = None) -> dict[str, TrainedNet]:
    """{net: TrainedNet} of the exported weights files among `weights` that hold a net of
    `names` (files of other nets are read, checked and left out), in the order of `names`.

    Every file must match `model_config` and `data_config` (`weights_file.load_weights`); without
    them, every file must match the first one.

    Raises:
      WeightsError: naming the file, when it is missing, unreadable or does not match.
      ConfigError: two files holding the same net.
    """
    loaded: dict[str, TrainedNet] = {}
    for path in weights:
        model, params, meta = weights_file.load_weights(path, model_config, data_config)
        if model_config is None:  # the next files must match this one
            model_config, data_config = ml_collections.ConfigDict(meta["model"]), meta["data"]
        if meta["net"] in loaded:
            raise ConfigError(f"weights files {loaded[meta['net']].origin} and {path} both hold {meta['net']}")
        loaded[meta["net"]] = TrainedNet(model, params, meta["step"], str(path), meta)
    return {n: loaded[n] for n in names if n in loaded}


def missing_nets_error(weights: Sequence[str | pathlib.Path], names: Sequence[str]) -> WeightsError:
    """The error for weights files none of which holds a net of `names`."""
    expected = repr(names[0]) if len(names) == 1 else f"one of {list(names)}"
    found = {}
    for path in weights:
        found[str(path)] = weights_file.load_weights(path)[2]["net"]
    return WeightsError("; ".join(f"{path}: net is {net!r} in the file, {expected} expected"
                                  for path, net in found.items()))


def load_trained_sr(workdir: str | pathlib.Path | None = None, weights: Sequence[str | pathlib.Path] = (),
                    names: Sequence[str] = SR_NETS, step: int | None = None,
                    model_config: ml_collections.ConfigDict | None = None,
                    data_config: Any = None) -> TrainedSR:
    """The SR networks among `names` of a trained run or of exported weights files (exactly one
    of `workdir` and `weights`), with the module to run them; no optimizer state is read.

    Args:
      workdir: a trained run: checkpoint `step` (default: the newest) of W/teacher_student, its
        module built from the run's config.json. Networks the run lacks (cycle_teacher: no
        SNet) are left out.
      weights: files written by `python -m fsr_jax.export`, one network each. Files of a net
        outside `names` are left out.
      names: the networks wanted ('tnet', 'snet'); the result keeps their order.
      step: a checkpoint of `workdir` (weights files hold one step each).
      model_config: the caller's `model` section. Weights files must match it (model.sr, up to
        implementation choices) and the module is built from it; a run is always restored into
        its own model, and a differing `model_config` is logged and ignored.
      data_config: a mapping with lr_size and hr_size the weights files must match. Without
        model_config / data_config, every file must match the first one.

    Raises:
      CheckpointError: naming the folder, when it has no such checkpoint, it is unreadable or
        holds none of `names`, or naming the file, when the run's config.json is unreadable.
      WeightsError (a CheckpointError): naming the file, when it is missing, unreadable, does
        not match, or (no file holding one of `names`) holds another net.
      ConfigError: two weights files holding the same net.
      ValueError: both or neither of `workdir` and `weights`, or `step` with `weights`.
    """
    if (workdir is None) == (not weights):
        raise ValueError("load_trained_sr takes a workdir or weights files, not both or neither")
    if workdir is not None:
        params, step = load_sr_networks(workdir, tuple(names), step)
        run = run_config(workdir)
        if model_config is not None and json.loads(model_config.to_json()) != run.model.to_dict():
            logging.warning("config.model differs from the run's %s; using the run's",
                            stage_dir(workdir) / "config.json")
        return TrainedSR(models.build_sr(run.model), params, dict.fromkeys(params, step),
                         dict.fromkeys(params, str(workdir)), int(run.data.lr_size))
    if step is not None:
        raise ValueError(f"step={step} picks a checkpoint of a workdir; a weights file holds one step")
    loaded = load_weights_files(weights, names, model_config, data_config)
    if not loaded:
        raise missing_nets_error(weights, names)
    return TrainedSR.from_files(loaded)


def load_trained_denet(workdir: str | pathlib.Path, step: int | None = None) -> TrainedNet:
    """DeNet of a trained run: from checkpoint `step` (default: the newest) of W/teacher_student,
    which holds the DeNet its teacher trained on, or, where stage 2 has no checkpoint or took
    none (bicubic or cycle teachers), the newest of W/degradation.

    Raises:
      CheckpointError: naming the folders, when neither holds a DeNet (or checkpoint `step` of
        stage 2 holds none).
    """
    second = stage_dir(workdir) / "checkpoints"
    if checkpointing.latest_step(second) is not None:
        saved, found = checkpointing.saved_networks(second, step)
        if "denet" in saved:
            params, found = checkpointing.restore_params(second, ("denet",), found)
            return _checkpoint_denet(params["denet"], found, workdir, TEACHER_STUDENT.name)
        if step is not None:
            raise checkpointing.CheckpointError(f"checkpoint {step} in {second} holds no DeNet (it has {list(saved)})")
    first = stage_dir(workdir, DEGRADATION.name) / "checkpoints"
    if checkpointing.latest_step(first) is None:
        raise checkpointing.CheckpointError(f"no DeNet in {workdir}: neither {second} nor {first} holds one")
    params, found = checkpointing.restore_params(first, ("denet",))
    return _checkpoint_denet(params["denet"], found, workdir, DEGRADATION.name)


def _checkpoint_denet(params: Any, step: int, workdir: str | pathlib.Path, stage: str) -> TrainedNet:
    run = run_config(workdir, stage)
    meta = {"net": "denet", "step": step, "model": run.model.to_dict(),
            "data": {"lr_size": int(run.data.lr_size), "hr_size": int(run.data.hr_size)}}
    return TrainedNet(models.build_downsampler(run.model), params, step, f"{workdir} ({stage})", meta)


@functools.lru_cache(maxsize=8)
def _sr_fn(model: models.FeedbackSR) -> Callable:
    """Jitted (params, uint8 LR (B, s, s, 3)) -> uint8 SR (B, 4s, 4s, 3), last iteration."""

    def apply(params, lr):
        out = model.apply({"params": params}, lr.astype(jnp.float32) / 255.0)[-1]
        return jnp.round(jnp.clip(out, 0.0, 1.0) * 255.0).astype(jnp.uint8)

    return jax.jit(apply)


def map_batches(fn: Callable, array: np.ndarray, batch_size: int, desc: str | None = None) -> np.ndarray:
    """fn over `array` (N, ...) in batches of exactly `batch_size` rows, so that a jitted fn
    compiles once: the last batch is padded by repeating its last row, and the padding's
    outputs are dropped. Returns the outputs concatenated on axis 0, as numpy.

    `desc` names a progress bar (none when None).
    """
    if len(array) == 0:
        raise ValueError("map_batches needs at least one row")
    outputs = []
    starts = range(0, len(array), batch_size)
    for start in tqdm.tqdm(starts, desc=desc, unit=" batches", disable=desc is None, leave=False):
        batch = array[start:start + batch_size]
        count = len(batch)
        if count < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - count, axis=0)])
        outputs.append(np.asarray(fn(batch))[:count])
    return np.concatenate(outputs)


def super_resolve(model: models.FeedbackSR, params: dict, lr: np.ndarray, batch_size: int = 64,
                  desc: str | None = None) -> np.ndarray:
    """uint8 (N, s, s, 3) LR faces in [0, 255] -> uint8 (N, scale*s, scale*s, 3) SR faces: the
    last iteration's output, clipped to [0, 1] and rounded to 8 bits (as saved PNGs are).

    Batches hold min(batch_size, the power of two >= N) faces, so that few shapes compile.
    """
    fn = _sr_fn(model)
    batch_size = min(batch_size, 1 << max(len(lr) - 1, 0).bit_length())
    return map_batches(lambda batch: fn(params, batch), np.asarray(lr, np.uint8), batch_size, desc)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: uint8 (N, s, s, 3) -> uint8 (N, scale*s, scale*s, 3) by PIL bicubic."""
    return np.stack([images.resize_bicubic(face, scale * face.shape[0]) for face in lr])


class FaceFiles(NamedTuple):
    """Faces read from files: uint8 `faces` (N, size, size, 3), their `paths`, the `failed`
    files as (path, reason), and the `resized` paths (another size, resized with PIL bicubic)."""

    faces: np.ndarray
    paths: list[pathlib.Path]
    failed: list[tuple[pathlib.Path, str]]
    resized: list[pathlib.Path]


def read_image(path: pathlib.Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of an image file (`images.read_image`).

    Raises:
      BadImageError: naming the file, when it cannot be read or decoded, or has more than
        `max_pixels` pixels (refused before decoding).
    """
    try:
        return images.read_image(path, max_pixels).pixels
    except Image.DecompressionBombError as err:
        raise images.BadImageError(path, f"too large ({err})") from None


def read_face_files(paths: list[pathlib.Path], size: int, resize: bool = True,
                    max_pixels: int = MAX_IMAGE_PIXELS) -> FaceFiles:
    """Reads face crops of any size as uint8 (size, size, 3) RGB; a file that cannot be read,
    or (with `resize` False) is not size x size, is listed in `failed` and the rest still read."""
    faces, good, failed, resized = [], [], [], []
    for path in paths:
        try:
            pixels = read_image(path, max_pixels)
        except (images.BadImageError, OSError) as err:
            failed.append((path, str(err)))
            continue
        height, width = pixels.shape[:2]
        if (height, width) != (size, size):
            if not resize:
                failed.append((path, f"{path}: is {width}x{height}; --noresize needs {size}x{size}"))
                continue
            pixels = images.resize_bicubic(pixels, size)
            resized.append(path)
        faces.append(pixels)
        good.append(path)
    stacked = np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)
    return FaceFiles(stacked, good, failed, resized)


def image_paths(path: str | pathlib.Path) -> list[pathlib.Path]:
    """[path] for a file, else the image files of a folder by name (`images.list_folder`).

    Raises:
      DataError: naming the path, when it does not exist or is a folder with no image file.
    """
    path = pathlib.Path(path).expanduser()
    if path.is_file():
        return [path]
    return list(images.list_folder(path).images)
