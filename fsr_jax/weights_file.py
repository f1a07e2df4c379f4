"""The weights-file format: one trained network (TNet, SNet or DeNet) with what it needs to run.

A weights file is the flax.serialization msgpack of {"format": "fsr_jax-weights/2", "config":
a JSON string, "params": the network's parameters, "sha256": a SHA-256 of the config string and
the parameters together}. The config holds everything needed to use the parameters without the
run: the run's `model` section, the data's `lr_size` and `hr_size`, the net's name, the
checkpoint step, the dtype the parameters are stored in (float32, or float16 for half the size;
cast back to float32 on load), their count and a SHA-256 of them. Any change to a file, config
or parameters, is refused. Files of format 1 (before 2026-12-03: the hash covered the
parameters only) still load, with one line saying so and the command that re-exports them.
Before any network is built, the config's fields are checked (types, ranges, the sizes this
code supports): a crafted or damaged one is one WeightsError naming the field.

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
import math
import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import serialization, traverse_util

import fsr_jax
from fsr_jax import checkpointing, edges, files, models
from fsr_jax.errors import FileReadError

FORMAT = "fsr_jax-weights/2"
#: The format before the file's hash covered its config; read with a note.
FORMAT_1 = "fsr_jax-weights/1"
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}
META_KEYS = ("net", "step", "dtype", "model", "data", "params_sha256")
#: A weights file larger than this is refused before it is read (the paper's nets: ~30 MB in float32).
MAX_FILE_BYTES = 2**30
#: The largest size (features, blocks, face side...) a file's config may declare.
MAX_SIZE = 4096
#: The most SR iterations a file's config may declare (the paper unrolls 3; each one is traced
#: and compiled, so a crafted large count would stall the first call).
MAX_ITERATIONS = 16


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


def payload_digest(config_json: str, params_sha256: str) -> str:
    """The file's SHA-256: of its config string and its parameters' digest (`params_digest`)."""
    return hashlib.sha256(config_json.encode() + b"\0" + params_sha256.encode()).hexdigest()


def is_weights_file(path: pathlib.Path) -> bool:
    """Whether `path` is an fsr_jax weights file of any format (intact or not)."""
    try:
        tree = serialization.msgpack_restore(files.read_bytes(path, MAX_FILE_BYTES, "a weights file"))
    except Exception:  # noqa: BLE001 -- unreadable, foreign or cut-off bytes: not one
        return False
    return isinstance(tree, dict) and str(tree.get("format", "")).startswith(FORMAT.split("/")[0] + "/")


def _type_problem(name: str, value: Any, default: Any) -> str | None:
    """Why a config value does not fit its field, whose default is `default` (same JSON type;
    integers from 1 to MAX_SIZE, or MAX_ITERATIONS for `iterations`; floats finite), or None."""
    wrong = f"{name} is {json.dumps(value)[:60]}, not a {type(default).__name__} like {json.dumps(default, default=list)}"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else wrong
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            return wrong
        limit = MAX_ITERATIONS if name.endswith(".iterations") else MAX_SIZE
        return None if 0 < value <= limit else f"{name} is {value}; it must be from 1 to {limit}"
    if isinstance(default, float):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if number and math.isfinite(value) else wrong
    if isinstance(default, str):
        return None if isinstance(value, str) else wrong
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            return wrong
        inner = (_type_problem(f"{name}[{k}]", v, default[0]) for k, v in enumerate(value)) if default else ()
        return next((p for p in inner if p), None)
    return None


def metadata_problems(meta: Any) -> list[str]:
    """One line per field of a weights file's config that is missing, of the wrong type or
    out of range, each naming the field; [] when the config can build its network."""
    if not isinstance(meta, dict):
        return [f"its config is a {type(meta).__name__}, not a mapping"]
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        return [f"its config lacks {missing}"]
    if not isinstance(meta["net"], str) or meta["net"] not in NETS:
        return [f"net is {json.dumps(meta['net'])[:60]}; this fsr_jax reads {list(NETS)}"]
    kind = NETS[meta["net"]]
    problems = []
    if not (isinstance(meta["step"], int) and not isinstance(meta["step"], bool) and meta["step"] >= 0):
        problems.append(f"step is {json.dumps(meta['step'])[:60]}, not a checkpoint step (an integer >= 0)")
    if not isinstance(meta["dtype"], str) or meta["dtype"] not in STORAGE_DTYPES:
        problems.append(f"dtype is {json.dumps(meta['dtype'])[:60]}, not one of {list(STORAGE_DTYPES)}")
    data = meta["data"]
    if not isinstance(data, dict):
        problems.append(f"data is {json.dumps(data)[:60]}, not a mapping with lr_size and hr_size")
    else:
        problems += [p for size in ("lr_size", "hr_size")
                     for p in [f"data.{size} is missing"] if size not in data]
        problems += [p for size in ("lr_size", "hr_size") if size in data
                     for p in [_type_problem(f"data.{size}", data[size], 1)] if p]
    model = meta["model"]
    section = model.get(kind.section) if isinstance(model, dict) else None
    if not isinstance(section, dict):
        return problems + [f"model.{kind.section} is missing or not a mapping"]
    if "dtype" in model and not (isinstance(model["dtype"], str) and model["dtype"] in models.DTYPES):
        problems.append(f"model.dtype is {json.dumps(model['dtype'])[:60]}, not one of {list(models.DTYPES)}")
    try:
        upgraded = plain(models.upgrade_config(model))[kind.section]
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        return problems + [f"model: {err}"]
    defaults = plain(models.default_config())[kind.section]
    problems += [p for key in sorted(set(upgraded) & set(defaults))
                 for p in [_type_problem(f"model.{kind.section}.{key}", upgraded[key], defaults[key])] if p]
    if kind.section == "sr" and not problems and data["hr_size"] != data["lr_size"] * upgraded["scale"]:
        problems.append(f"data.hr_size {data['hr_size']} is not data.lr_size {data['lr_size']} x model.sr.scale "
                        f"{upgraded['scale']}")
    return problems


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
    config_json = json.dumps(meta)
    blob = serialization.msgpack_serialize({"format": FORMAT, "config": config_json, "params": stored,
                                            "sha256": payload_digest(config_json, meta["params_sha256"])})
    files.write_bytes(path, blob, replaces=is_weights_file)
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
    if not path.exists() and not path.is_symlink():
        raise WeightsError(f"{path}: no such weights file")
    try:
        raw = files.read_bytes(path, MAX_FILE_BYTES, "a weights file")
    except FileReadError as err:
        raise WeightsError(str(err)) from None
    try:
        tree = serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack raises several kinds for foreign or cut-off bytes
        raise WeightsError(f"{path}: not an fsr_jax weights file, or a truncated or corrupt one "
                           f"({len(raw)} bytes; msgpack: {err})") from err
    found = tree.get("format") if isinstance(tree, dict) else None
    if found not in (FORMAT, FORMAT_1):
        newer = isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/")
        raise WeightsError(
            f"{path}: " + (f"weights format {found!r}, which this fsr_jax ({fsr_jax.__version__}) cannot "
                           f"read (it reads {FORMAT!r})" if newer else
                           f"not an fsr_jax weights file (no 'format': {FORMAT!r} entry)"))
    try:
        config_json = tree["config"]
        meta = json.loads(config_json)
        params = tree["params"]
        if not isinstance(params, dict) or not params:
            raise ValueError("it holds no parameters")
        digest = params_digest(params)
    except (KeyError, TypeError, ValueError, RecursionError) as err:
        raise WeightsError(f"{path}: a corrupt fsr_jax weights file: {err}") from err
    changed = f"{path}: a corrupt fsr_jax weights file: its {{}} do not match its SHA-256 (changed after export)"
    if found == FORMAT and tree.get("sha256") != payload_digest(config_json, digest):
        raise WeightsError(changed.format("config and parameters"))
    if not isinstance(meta, dict) or meta.get("params_sha256") != digest:
        raise WeightsError(changed.format("parameters"))
    problems = metadata_problems(meta)
    if problems:
        raise WeightsError(f"{path}: its config cannot build a network: " + "; ".join(problems))
    if found == FORMAT_1:
        logging.warning("%s: a weights file of format 1, whose hash covers its parameters but not its config; "
                        "re-export it to protect both: python -m fsr_jax.export --weights %s --output NEW.msgpack "
                        "--dtype %s", path, path, meta["dtype"])
    return {"format": found, **meta}, params


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
