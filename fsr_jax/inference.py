"""Super-resolution with a trained run: its SR networks restored from W/teacher_student or
exported weights files (`load_trained_sr`, what every command that runs a trained net uses) and
applied to uint8 faces in fixed-size batches, the PIL-bicubic baseline, and reading face files.

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

from fsr_jax import checkpointing, models
from fsr_jax.data import images
from fsr_jax.stages.teacher_student import STAGE as TEACHER_STUDENT

SR_NETS = ("tnet", "snet")


def stage_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    """W/teacher_student: the stage folder holding the SR networks' checkpoints."""
    return pathlib.Path(workdir).expanduser() / TEACHER_STUDENT.name


def run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run's stage 2 was trained with (W/teacher_student/config.json), its `model`
    section in today's field names (`models.upgrade_config`: older runs say `sr.steps`).

    Tuples come back as lists (JSON has no tuples).

    Raises:
      CheckpointError: naming the file, when it is missing, not JSON, or holds a model this
        version cannot build.
    """
    path = stage_dir(workdir) / "config.json"
    try:
        config = ml_collections.ConfigDict(json.loads(path.read_text()))
        config.model = models.upgrade_config(config.model)
        return config
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

    def describe(self, net: str) -> str:
        """'<net> of <workdir or file> (checkpoint <step>)'."""
        return f"{net} of {self.origins[net]} (checkpoint {self.steps[net]})"


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
    from fsr_jax import export  # noqa: PLC0415 (export imports this module)

    model, loaded = None, {}
    for path in weights:
        model, params, meta = export.load_weights(path, model_config, data_config)
        if model_config is None:  # the next files must match this one
            model_config, data_config = ml_collections.ConfigDict(meta["model"]), meta["data"]
        if meta["net"] in loaded:
            # Here only: config_checks imports this module, and the training code.
            from fsr_jax.config_checks import ConfigError  # noqa: PLC0415

            raise ConfigError(f"weights files {loaded[meta['net']][0]} and {path} both hold {meta['net']}")
        loaded[meta["net"]] = (str(path), params, meta)
    nets = [n for n in names if n in loaded]
    if not nets:
        expected = repr(names[0]) if len(names) == 1 else f"one of {list(names)}"
        raise export.WeightsError("; ".join(f"{path}: net is {net!r} in the file, {expected} expected"
                                            for net, (path, _, _) in loaded.items()))
    return TrainedSR(model, {n: loaded[n][1] for n in nets}, {n: loaded[n][2]["step"] for n in nets},
                     {n: loaded[n][0] for n in nets}, int(loaded[nets[0]][2]["data"]["lr_size"]))


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


def read_image(path: pathlib.Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of an image file (`images.read_image`).

    Raises:
      BadImageError: naming the file, when it cannot be read or decoded, or is over PIL's
        pixel limit (Image.MAX_IMAGE_PIXELS; PIL's DecompressionBombError).
    """
    try:
        return images.read_image(path).pixels
    except Image.DecompressionBombError as err:
        raise images.BadImageError(path, f"too large ({err})") from None


def read_face_files(paths: list[pathlib.Path], size: int, resize: bool = True) -> FaceFiles:
    """Reads face crops of any size as uint8 (size, size, 3) RGB; a file that cannot be read,
    or (with `resize` False) is not size x size, is listed in `failed` and the rest still read."""
    faces, good, failed, resized = [], [], [], []
    for path in paths:
        try:
            pixels = read_image(path)
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
