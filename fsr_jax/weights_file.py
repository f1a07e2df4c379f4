"""The weights-file format: one trained network (TNet, SNet or DeNet) with what it needs to run.

A weights file is the flax.serialization msgpack of {"format": "fsr_jax-weights/1", "config":
a JSON string, "params": the network's parameters}. The config holds everything needed to use
the parameters without the run: the run's `model` section, the data's `lr_size` and `hr_size`,
the net's name, the checkpoint step, the dtype the parameters are stored in (float32, or
float16 for half the size; cast back to float32 on load), their count and a SHA-256 of them.

`save_weights` writes one; `load_weights(path, model_config, data_config, net)` checks it against
what the caller expects and returns (module, float32 params, metadata). Every failure is a
WeightsError naming the file: missing, not an fsr_jax weights file, truncated or corrupt, another
net, or a network layout different from the given config (naming each field). Needs neither
TensorFlow nor TFDS; `python -m fsr_jax.export` is the command that writes these files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization, traverse_util

import fsr_jax
from fsr_jax import checkpointing, edges, models

FORMAT = "fsr_jax-weights/1"
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}
META_KEYS = ("net", "step", "dtype", "model", "data", "params_sha256")


@dataclasses.dataclass(frozen=True)
class NetKind:
    """What a weights file of one net holds: the `model` subsection its layout is read from, the
    builder of its module, the face size it takes ('lr_size' or 'hr_size'), and the fields of
    that subsection that only choose among implementations of the same function with the same
    parameters (tested equal): the caller's choice, like model.dtype. Every other field must match."""

    section: str
    build: Callable[[ml_collections.ConfigDict], nn.Module]
    input_size: str
    implementation_fields: tuple[str, ...] = ()


_SR = NetKind("sr", models.build_sr, "lr_size", ("projection",) + edges.implementation_fields())
#: The networks a weights file can hold: the two SR nets and the degradation net.
NETS = {"tnet": _SR, "snet": _SR, "denet": NetKind("downsampler", models.build_downsampler, "hr_size")}
SR_NETS = ("tnet", "snet")


class WeightsError(checkpointing.CheckpointError):
    """A weights file cannot be used; the message names the file and what is wrong."""


def flat(params: Any) -> dict[str, np.ndarray]:
    """{'a/b/kernel': array} of a nested params dict, sorted by path."""
    flattened = traverse_util.flatten_dict(params, sep="/")
    return {k: flattened[k] for k in sorted(flattened)}


def params_digest(params: Any) -> str:
    """SHA-256 over every parameter's path, dtype, shape and bytes, in path order."""
    digest = hashlib.sha256()
    for path, value in flat(params).items():
        value = np.ascontiguousarray(value)
        digest.update(f"{path}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _sizes(data_config: Any) -> dict[str, int]:
    return {"lr_size": int(data_config["lr_size"]), "hr_size": int(data_config["hr_size"])}


def plain(config: Any) -> dict:
    """A ConfigDict or dict as plain JSON types (tuples become lists)."""
    if isinstance(config, ml_collections.ConfigDict):
        config = config.to_dict()
    return json.loads(json.dumps(config, default=list))


def save_weights(path: str | pathlib.Path, net: str, params: Any, model_config: Any, data_config: Any,
                 step: int, dtype: str = "float32") -> dict:
    """Write `net`'s params with their config to `path` (atomically); return the metadata.

    Args:
      path: the file to write (its folder is created).
      net: one of NETS ('tnet', 'snet', 'denet').
      params: the network's parameters (arrays), as a checkpoint holds them.
      model_config: the run's `model` section (ConfigDict or dict).
      data_config: the run's `data` section, or any mapping with lr_size and hr_size.
      step: the checkpoint step the params come from.
      dtype: storage dtype, 'float32' or 'float16'.

    Raises:
      ValueError: an unknown net or dtype, or a parameter outside float16's range.
    """
    if net not in NETS:
        raise ValueError(f"net must be one of {tuple(NETS)}, got {net!r}")
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {tuple(STORAGE_DTYPES)}, got {dtype!r}")
    stored = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32).astype(STORAGE_DTYPES[dtype]), params)
    for name, value in flat(stored).items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{net} parameter {name} is not finite in {dtype} "
                             f"(largest magnitude {np.max(np.abs(flat(params)[name])):.4g}); export as float32")
    meta = {"net": net, "step": int(step), "dtype": dtype, "model": plain(model_config),
            "data": _sizes(data_config), "parameters": int(sum(v.size for v in flat(stored).values())),
            "params_sha256": params_digest(stored), "fsr_jax_version": fsr_jax.__version__}
    blob = serialization.msgpack_serialize({"format": FORMAT, "config": json.dumps(meta), "params": stored})
    path = pathlib.Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(blob)
    os.replace(partial, path)
    return {"format": FORMAT, **meta}


def _differences(prefix: str, in_file: Any, expected: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """'prefix.key is A in the file, B in the config' for each differing leaf (JSON-normalised)."""
    if isinstance(in_file, dict) and isinstance(expected, dict):
        found = []
        for key in sorted(set(in_file) | set(expected)):
            if key in skip:
                continue
            if key not in in_file:
                found.append(f"{prefix}.{key} is missing in the file, {expected[key]!r} in the config")
            elif key not in expected:
                found.append(f"{prefix}.{key} is {in_file[key]!r} in the file, missing in the config")
            else:
                found += _differences(f"{prefix}.{key}", in_file[key], expected[key])
        return found
    return [] if in_file == expected else [f"{prefix} is {in_file!r} in the file, {expected!r} in the config"]


def _read(path: pathlib.Path) -> tuple[dict, dict]:
    """(metadata, params as stored) of a weights file, or WeightsError naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except OSError as err:
        raise WeightsError(f"{path}: cannot read the weights file: {err}") from err
    try:
        tree = serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack raises several kinds for foreign or cut-off bytes
        raise WeightsError(f"{path}: not an fsr_jax weights file, or a truncated or corrupt one "
                           f"({len(raw)} bytes; msgpack: {err})") from err
    found = tree.get("format") if isinstance(tree, dict) else None
    if found != FORMAT:
        newer = isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/")
        raise WeightsError(
            f"{path}: " + (f"weights format {found!r}, which this fsr_jax ({fsr_jax.__version__}) cannot "
                           f"read (it reads {FORMAT!r})" if newer else
                           f"not an fsr_jax weights file (no 'format': {FORMAT!r} entry)"))
    try:
        meta = json.loads(tree["config"])
        missing = [k for k in META_KEYS if k not in meta]
        if missing:
            raise ValueError(f"its config lacks {missing}")
        params = tree["params"]
        if not isinstance(params, dict) or not params:
            raise ValueError("it holds no parameters")
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsError(f"{path}: a corrupt fsr_jax weights file: {err}") from err
    if params_digest(params) != meta["params_sha256"]:
        raise WeightsError(f"{path}: a corrupt fsr_jax weights file: its parameters do not match their "
                           f"SHA-256 (changed after export)")
    if meta["net"] not in NETS:
        raise WeightsError(f"{path}: holds the net {meta['net']!r}; this fsr_jax reads {list(NETS)}")
    return {"format": FORMAT, **meta}, params


def _shape_problems(model: nn.Module, params: dict, size: int) -> list[str]:
    """How params differ in tree or shapes from what `model` initialises (traced, not run)."""
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
    expected, given = flat(expected["params"]), flat(params)
    problems = [f"{k} missing" for k in expected if k not in given]
    problems += [f"{k} unexpected" for k in given if k not in expected]
    problems += [f"{k} has shape {tuple(given[k].shape)}, the network needs {tuple(expected[k].shape)}"
                 for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    return problems


def load_weights(path: str | pathlib.Path, model_config: Any = None, data_config: Any = None,
                 net: str | None = None) -> tuple[nn.Module, dict, dict]:
    """The network of a weights file, checked against what the caller expects.

    Args:
      path: a file written by `save_weights` / `python -m fsr_jax.export`.
      model_config: a `model` section the file must match (every field of the net's subsection,
        `model.sr` or `model.downsampler`, but its implementation fields); the module is then
        built from it (its dtype, Canny and projection forms). None: built from the file's own
        `model` section.
      data_config: a `data` section whose lr_size and hr_size the file must match, or None.
      net: the net ('tnet', 'snet', 'denet') the file must hold, or None.

    Returns:
      (module: FeedbackSR for TNet / SNet, Downsampler for DeNet, float32 numpy params, metadata
      dict: format, net, step, dtype, model, data {lr_size, hr_size}, parameters, params_sha256,
      fsr_jax_version).

    Raises:
      WeightsError: naming the file, when it is missing, unreadable, not an fsr_jax weights
        file, truncated or corrupt, or differs from the expectations (naming each field).
    """
    path = pathlib.Path(path).expanduser()
    meta, params = _read(path)
    kind = NETS[meta["net"]]
    problems = []
    if net is not None and meta["net"] != net:
        problems.append(f"net is {meta['net']!r} in the file, {net!r} expected")
    if model_config is not None:
        try:  # both in today's field names (files of an older fsr_jax hold older ones)
            expected, in_file = (plain(models.upgrade_config(c)) for c in (model_config, meta["model"]))
        except ValueError as err:
            raise WeightsError(f"{path}: {err}") from err
        problems += _differences(f"model.{kind.section}", in_file.get(kind.section, {}), expected[kind.section],
                                 kind.implementation_fields)
    if data_config is not None:
        problems += _differences("data", meta["data"], _sizes(data_config))
    if problems:
        raise WeightsError(f"{path}: " + "; ".join(problems))
    build_cfg = ml_collections.ConfigDict(plain(model_config) if model_config is not None else meta["model"])
    try:
        model = kind.build(build_cfg)
    except (ValueError, TypeError, KeyError) as err:
        raise WeightsError(f"{path}: its model config does not build a network: {err}") from err
    shapes = _shape_problems(model, params, meta["data"][kind.input_size])
    if shapes:
        raise WeightsError(f"{path}: its parameters do not fit the network of its config: "
                           + "; ".join(shapes[:5]) + (f"; and {len(shapes) - 5} more" if len(shapes) > 5 else ""))
    return model, jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params), meta
