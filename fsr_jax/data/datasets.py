"""From the `data` config to prepared datasets: build on first use, reuse, read back.

Each source (a folder, or the synthetic default) is prepared into its own directory under
`data.tfds_dir`, named after the folder plus a digest of everything that decides its content
(absolute path, every entry's name, size and mtime, image sizes, policies, builder version).
A changed folder or policy therefore gets a fresh preparation, and an unchanged one is reused;
the log says which, and repeats what the folder check dropped or changed. A preparation logs
one line of its own (e.g. "preparing HR faces from /data/HIGH: 900 images, into ...") and shows
one progress bar; TFDS's own messages are kept off the console meanwhile.

A finished preparation gets a manifest (`MANIFEST`: name, size and sha256 of every file), which
every reuse checks; a damaged dataset (a truncated or altered file, a missing one) is rebuilt,
with one log line naming the damage. Preparations of one dataset folder are serialised by a
file lock (`<folder>.lock` beside it): a second process waits, logging that it does, and then
reuses what the first prepared.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging as std_logging
import os
import pathlib
import re
import shutil
from collections.abc import Callable

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from fsr_jax import files
from fsr_jax.errors import FsrJaxError
from fsr_jax.registry import Registry
from fsr_jax.data import builders, images
from fsr_jax.data import config as data_config

SYNTHETIC_TEST_SETS = ("synthetic_bicubic", "synthetic_real")
# The manifest of a prepared dataset, in its version folder beside TFDS's files.
MANIFEST = "fsr_jax_manifest.json"


def check_config(data_cfg: ml_collections.ConfigDict) -> None:
    """Raises DataError (one line) when a value of the `data` section cannot work."""
    problems = data_config.problems(data_cfg)
    if problems:
        raise images.DataError("invalid data config: " + "; ".join(problems))


def uses_synthetic(data_cfg: ml_collections.ConfigDict) -> bool:
    """Whether the config selects the synthetic default (hr_dir and lr_dir both unset).

    Raises:
      ValueError: when only one of hr_dir and lr_dir is set.
    """
    if (data_cfg.hr_dir is None) != (data_cfg.lr_dir is None):
        raise ValueError(
            "set both data.hr_dir and data.lr_dir (unpaired HR and real LR folders) or neither "
            f"(synthetic default); got hr_dir={data_cfg.hr_dir!r}, lr_dir={data_cfg.lr_dir!r}")
    return data_cfg.hr_dir is None


def _digest(description: dict) -> str:
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]


def _folder_state(folder: pathlib.Path) -> list:
    """(name, size, mtime_ns) of every entry of a folder, recursively one level (LR/, HR/)."""
    if not folder.is_dir():
        return []
    state = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        try:
            st, followed = entry.stat(), True
        except OSError:  # a dangling link or a loop: its own state (the folder check names it)
            st, followed = entry.stat(follow_symlinks=False), False
        state.append([entry.name, st.st_size, st.st_mtime_ns])
        if followed and entry.is_dir() and entry.name in ("LR", "HR"):
            state.append(_folder_state(pathlib.Path(entry.path)))
    return state


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "root"


def _tfds_dir(data_cfg) -> pathlib.Path:
    return pathlib.Path(os.path.expanduser(data_cfg.tfds_dir))


class _TfdsChatter(std_logging.Filter):
    """Drops TFDS's INFO records (generating, writing, loading info) and its warning that a
    not yet prepared folder has no dataset_info.json; keeps every other record."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if "tensorflow_datasets" not in record.pathname:
            return True
        if record.levelno <= std_logging.INFO:
            return False
        return not str(record.msg).startswith("Variant folder")


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS's console output off (its log chatter and progress bars) while ours runs."""
    from tensorflow_datasets.core.utils import tqdm_utils

    bars_were_on = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(False)
    chatter = _TfdsChatter()
    absl_logger = std_logging.getLogger("absl")
    absl_logger.addFilter(chatter)
    try:
        yield
    finally:
        absl_logger.removeFilter(chatter)
        tfds.display_progress_bar(bars_were_on)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _dataset_files(data_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    return {p.name: p for p in sorted(data_dir.iterdir()) if p.is_file() and p.name != MANIFEST}


def write_manifest(data_dir: os.PathLike | str) -> dict:
    """Writes the manifest of a prepared dataset's folder: {'files': {name: {'size',
    'sha256'}}} of every file in it (array_record shards, dataset_info.json, features.json...).
    """
    data_dir = pathlib.Path(data_dir)
    manifest = {"files": {name: {"size": path.stat().st_size, "sha256": _sha256(path)}
                          for name, path in _dataset_files(data_dir).items()}}
    files.write_text(data_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def damage(data_dir: os.PathLike | str) -> str | None:
    """What differs between a prepared dataset's files and its manifest (sizes first, then
    sha256 of every file), or None when they agree. Raises FileNotFoundError without one."""
    data_dir = pathlib.Path(data_dir)
    expected = json.loads((data_dir / MANIFEST).read_text())["files"]
    files = _dataset_files(data_dir)
    missing = sorted(set(expected) - set(files))
    if missing:
        return "missing " + ", ".join(missing)
    for name, want in expected.items():
        size = files[name].stat().st_size
        if size != want["size"]:
            return f"{name} has {size:,} bytes, the manifest {want['size']:,}"
    for name, want in expected.items():
        if _sha256(files[name]) != want["sha256"]:
            return f"{name} differs from the manifest (sha256)"
    return None


@contextlib.contextmanager
def _locked(root: pathlib.Path, what: str):
    """An exclusive file lock on the dataset folder `root` (the file `<root>.lock` beside it)
    for the duration; logs one line when another process holds it and this one waits."""
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f"{root.name}.lock"
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.info("waiting for another prepare of %s (lock %s)", what, lock_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare(make_builder, what: str, count: str, root: pathlib.Path, manual_dir=None):
    """The builder `make_builder()` returns, built unless its directory holds a finished,
    undamaged preparation (checked against its manifest; a damaged one is removed and rebuilt).
    `root` is the dataset's folder under tfds_dir, locked meanwhile. Logs one line: that it
    prepares `what` (`count` of it) and where, or that it reuses the prepared dataset; then
    what the folder checks dropped or changed.

    Raises:
      DataError: naming the folder, when data.tfds_dir cannot be written (read-only, a file).
    """
    try:
        return _prepare_locked(make_builder, what, count, root, manual_dir)
    except OSError as err:
        if isinstance(err, FsrJaxError):
            raise
        raise images.DataError(f"cannot prepare {what} in {root}: {err.strerror or err}; set data.tfds_dir "
                               f"to a folder this user can write") from err


def _prepare_locked(make_builder, what: str, count: str, root: pathlib.Path, manual_dir=None):
    with _locked(root, what), _quiet_tfds():
        builder = make_builder()
        reason = "first use, or the source changed"
        if builder.is_prepared():
            data_dir = pathlib.Path(builder.data_dir)
            if not (data_dir / MANIFEST).exists():  # prepared before manifests existed
                write_manifest(data_dir)
                problem = None
            else:
                problem = damage(data_dir)
            if problem is None:
                logging.info("%s: reusing the prepared dataset in %s", what, builder.data_dir)
            else:
                logging.warning("%s: the prepared dataset in %s is damaged (%s); rebuilding it",
                                what, builder.data_dir, problem)
                shutil.rmtree(data_dir)
                builder = make_builder()
                reason = "the prepared one was damaged"
        if not builder.is_prepared():
            logging.info("preparing %s: %s, into %s (%s)", what, count, builder.data_dir, reason)
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
            write_manifest(builder.data_dir)
    for part, scan in builder.info.metadata.get("scans", {}).items():
        summary = scan["summary"].removeprefix(f"{scan['folder']}: ")
        logging.info("%s%s: %s", what, "" if part == "image" else f" ({part.upper()})", summary)
    return builder


def folder_builder(folder, size: int, data_cfg, role: str) -> builders.FaceFolder:
    """The prepared `FaceFolder` of an HR or LR training folder (built on first use)."""
    folder = pathlib.Path(os.path.expanduser(folder)).resolve()
    listing = images.list_folder(folder)  # a clear error for a missing or empty folder, first
    key = _digest({"folder": str(folder), "state": _folder_state(folder), "size": size,
                   "bad": data_cfg.on_bad_image, "wrong": data_cfg.on_wrong_size,
                   "max_pixels": data_cfg.max_image_pixels,
                   "version": str(builders.FaceFolder.VERSION)})
    what = f"{role.upper()} faces from {images.printable(folder)}"
    root = _tfds_dir(data_cfg) / f"{role}-{_slug(folder.name)}-{key}"
    return _prepare(lambda: builders.FaceFolder(
        size=size, on_bad_image=data_cfg.on_bad_image, on_wrong_size=data_cfg.on_wrong_size,
        max_pixels=data_cfg.max_image_pixels, progress=data_cfg.progress, label=what,
        data_dir=root, file_format="array_record"), what, f"{len(listing.images)} images", root,
        manual_dir=folder)


def test_folder_builder(folder, data_cfg, name: str) -> builders.FaceTestFolder:
    """The prepared `FaceTestFolder` of a test folder (LR/ and optional HR/)."""
    folder = pathlib.Path(os.path.expanduser(folder)).resolve()
    if not folder.is_dir():
        raise images.DataError(f"test set {name!r}: folder {folder} does not exist")
    if not (folder / "LR").is_dir():
        raise images.DataError(f"test set {name!r}: {folder} has no LR/ folder")
    config = "paired" if (folder / "HR").is_dir() else "lr_only"
    parts = ("LR", "HR") if config == "paired" else ("LR",)
    count = " + ".join(f"{len(images.list_folder(folder / p).images)} {p}" for p in parts)
    key = _digest({"folder": str(folder), "state": _folder_state(folder),
                   "sizes": [data_cfg.hr_size, data_cfg.lr_size], "bad": data_cfg.on_bad_image,
                   "wrong": data_cfg.on_wrong_size, "config": config,
                   "max_pixels": data_cfg.max_image_pixels,
                   "version": str(builders.FaceTestFolder.VERSION)})
    what = f"test set {name!r} from {images.printable(folder)}"
    root = _tfds_dir(data_cfg) / f"test-{_slug(name)}-{key}"
    return _prepare(lambda: builders.FaceTestFolder(
        config=config, hr_size=data_cfg.hr_size, lr_size=data_cfg.lr_size,
        on_bad_image=data_cfg.on_bad_image, on_wrong_size=data_cfg.on_wrong_size,
        max_pixels=data_cfg.max_image_pixels, progress=data_cfg.progress, label=what,
        data_dir=root, file_format="array_record"), what, f"{count} images", root,
        manual_dir=folder)


def synthetic_builder(data_cfg, config: str) -> builders.SyntheticFaces:
    """The prepared `SyntheticFaces` of one config ('hr', 'lr', 'test_paired', 'test_lr')."""
    count = {"hr": data_cfg.synthetic_hr, "lr": data_cfg.synthetic_lr}.get(
        config, data_cfg.synthetic_test)
    key = _digest({"count": count, "seed": data_cfg.synthetic_seed,
                   "sizes": [data_cfg.hr_size, data_cfg.lr_size],
                   "version": str(builders.SyntheticFaces.VERSION)})
    what = f"synthetic {config} faces (seed {data_cfg.synthetic_seed})"
    root = _tfds_dir(data_cfg) / f"synthetic-{key}"
    return _prepare(lambda: builders.SyntheticFaces(
        config=config, count=count, seed=data_cfg.synthetic_seed, hr_size=data_cfg.hr_size,
        lr_size=data_cfg.lr_size, progress=data_cfg.progress, label=what,
        data_dir=root, file_format="array_record"), what, f"{count} faces to draw", root)


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a run's faces come from. `train(data_cfg)`: the (HR, LR) prepared training datasets,
    TFDS builders with split 'train' and features {'image', 'name'}; `test_sets(data_cfg)`: the
    names of the source's own test sets, evaluated when data.test_sets is empty; `test(data_cfg,
    name)`: the builder of one of them (split 'test', features 'lr', optional 'hr', 'name')."""

    train: Callable[[ml_collections.ConfigDict], tuple[tfds.core.DatasetBuilder, tfds.core.DatasetBuilder]]
    test_sets: Callable[[ml_collections.ConfigDict], tuple[str, ...]] = lambda data_cfg: ()
    test: Callable[[ml_collections.ConfigDict, str], tfds.core.DatasetBuilder] | None = None


def _folder_training_sets(data_cfg):
    return (folder_builder(data_cfg.hr_dir, data_cfg.hr_size, data_cfg, "hr"),
            folder_builder(data_cfg.lr_dir, data_cfg.lr_size, data_cfg, "lr"))


def _synthetic_training_sets(data_cfg):
    default = uses_synthetic(data_cfg)
    logging.info("%straining on the SYNTHETIC %sfaces (%d HR, %d degraded LR, seed %d), not on real faces",
                 "data.hr_dir and data.lr_dir are unset: " if default else "", "default " if default else "",
                 data_cfg.synthetic_hr, data_cfg.synthetic_lr, data_cfg.synthetic_seed)
    return synthetic_builder(data_cfg, "hr"), synthetic_builder(data_cfg, "lr")


#: The data sources by name (`data.source`); register another to train on faces from elsewhere.
SOURCES: Registry[DataSource] = Registry("data source")
SOURCES.register("folders", DataSource(_folder_training_sets))
SOURCES.register("synthetic", DataSource(
    _synthetic_training_sets, lambda data_cfg: SYNTHETIC_TEST_SETS,
    lambda data_cfg, name: synthetic_builder(data_cfg, {"synthetic_bicubic": "test_paired",
                                                        "synthetic_real": "test_lr"}[name])))


def source(data_cfg) -> DataSource:
    """The config's data source: `data.source`, or by default the folders when hr_dir and lr_dir
    are set, else the synthetic faces. DataError naming the registered ones for an unknown name."""
    name = data_cfg.get("source", "") or ("synthetic" if uses_synthetic(data_cfg) else "folders")
    if name not in SOURCES:
        raise images.DataError(f"data.source {name!r} is not a registered data source; the sources are "
                               f"{list(SOURCES)}")
    return SOURCES[name]


def train_builders(data_cfg) -> tuple[tfds.core.DatasetBuilder, tfds.core.DatasetBuilder]:
    """(HR, LR) prepared training datasets of the config's data source, each with split 'train'
    and features {'image', 'name'}; the synthetic default when no folder is set (logged)."""
    check_config(data_cfg)
    return source(data_cfg).train(data_cfg)


def test_set_names(data_cfg) -> tuple[str, ...]:
    """Names of the test sets to evaluate: data.test_sets, or the data source's own (the
    synthetic ones on the synthetic default) when that is empty."""
    if data_cfg.test_sets:
        return tuple(data_cfg.test_sets.keys())
    return tuple(source(data_cfg).test_sets(data_cfg))


def test_builder(data_cfg, name: str) -> tfds.core.DatasetBuilder:
    """The prepared test set `name` (split 'test', features 'lr', optional 'hr', 'name')."""
    check_config(data_cfg)
    if name in data_cfg.test_sets:
        return test_folder_builder(data_cfg.test_sets[name], data_cfg, name)
    own = source(data_cfg)
    if name in own.test_sets(data_cfg):
        return own.test(data_cfg, name)
    raise KeyError(f"unknown test set {name!r}: data.test_sets has {sorted(data_cfg.test_sets)}"
                   f" and the data source's own are {list(own.test_sets(data_cfg))}")


def load_test_set(data_cfg, name: str, max_images: int | None = None) -> dict:
    """A whole test set in memory, in file-name order.

    Returns:
      {'lr': uint8 (N, lr_size, lr_size, 3) in [0, 255],
       'hr': uint8 (N, hr_size, hr_size, 3) in [0, 255], or None for real-LR-only sets,
       'names': list of N source file names}; N is capped at `max_images` if given.
    """
    builder = test_builder(data_cfg, name)
    source = builder.as_data_source("test")
    keys = tuple(k for k in ("lr", "hr") if k in builder.info.features)
    if max_images is not None:
        source = _Head(source, max_images)
    data = builders.read_all(source, keys)
    return {"lr": data["lr"], "hr": data.get("hr"), "names": data["names"]}


class _Head:
    """The first n records of a data source."""

    def __init__(self, source, n: int):
        self._source, self._n = source, min(n, len(source))

    def __len__(self) -> int:
        return self._n

    def __getitems__(self, indices):
        return self._source.__getitems__(indices)


def read_faces(builder: tfds.core.DatasetBuilder) -> tuple[np.ndarray, list[str]]:
    """All faces of a prepared training dataset: uint8 (N, S, S, 3) in [0, 255] and names."""
    data = builders.read_all(builder.as_data_source("train"), ("image",))
    return data["image"], data["names"]


def prepare_all(data_cfg) -> list[tfds.core.DatasetBuilder]:
    """Prepares (or reuses) the training sets and every test set of the config."""
    hr, lr = train_builders(data_cfg)
    return [hr, lr] + [test_builder(data_cfg, name) for name in test_set_names(data_cfg)]
