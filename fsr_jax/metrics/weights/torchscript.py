"""Reads the tensors of a TorchScript archive with zipfile, pickle and numpy: no torch, no code run.

A TorchScript file (`torch.jit.save`) is a zip archive under one top folder `<root>/`:

- `<root>/data.pkl`: the module tree, pickled. Modules are objects of classes named
  `__torch__.<module path> <Class>`, their attributes a dict (`training`, submodules, tensors).
  A tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
  hooks)`, where `storage` is a persistent id `('storage', torch.<Type>Storage, key, device, numel)`.
- `<root>/data/<key>`: the raw little-endian bytes of each storage.
- `<root>/code/`, `<root>/constants.pkl`: the compiled code and its constants (not read here).

`read_tensors(path)` unpickles `data.pkl` with an Unpickler whose `find_class` maps those torch
names to numpy-building stand-ins and refuses every other global, so reading a file never
imports torch nor calls anything the file names.
"""
from __future__ import annotations

import collections
import pickle
import zipfile

import numpy as np

# torch's legacy typed storage names (what TorchScript writes) -> numpy element types.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchScriptError(ValueError):
    """A TorchScript archive that cannot be read: not a zip, no data.pkl, a refused global, bad storage."""


class ScriptModule:
    """Stand-in for a `__torch__.*` module object: its pickled attributes, in their order."""

    qualified_name = "__torch__"

    def __setstate__(self, state: dict) -> None:
        self.attributes = dict(state)


class _Storage:
    """Stand-in for a `torch.<Type>Storage` global: only its element type matters."""

    def __init__(self, dtype: type):
        self.dtype = np.dtype(dtype)


def _script_class(module: str, name: str) -> type:
    return type(name, (ScriptModule,), {"qualified_name": f"{module}.{name}"})


def _as_list(values):
    return list(values)


def _restore_type_tag(value, _type_str):
    return value


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles `data.pkl` into ScriptModule objects holding numpy arrays.

    storages: {key: bytes} of the archive's `data/` folder; byteorder: '<' or '>'.
    """

    def __init__(self, file, storages: dict[str, bytes], byteorder: str):
        super().__init__(file)
        self._storages = storages
        self._byteorder = byteorder
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return self._classes.setdefault((module, name), _script_class(module, name))
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(STORAGE_DTYPES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist",
                                                        "build_tensorlist"):
            return _as_list
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return _restore_type_tag
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name} from a TorchScript archive")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a TorchScript archive")
        _, storage, key, _device, numel = pid
        if key not in self._storages:
            raise pickle.UnpicklingError(f"storage data/{key} is missing from the archive")
        raw = self._storages[key]
        dtype = storage.dtype.newbyteorder(self._byteorder)
        if len(raw) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"storage data/{key} holds {len(raw)} bytes, {numel} x {dtype.itemsize} expected")
        return np.frombuffer(raw, dtype).astype(storage.dtype, copy=False)


def strided_view(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    """The tensor over a 1-D storage: element [i0, i1, ...] = storage[offset + sum(i_k * stride_k)].

    Returns a new C-contiguous array of shape `size`. Offsets and strides count elements; a view
    that would reach outside the storage raises (a file cannot make it read other memory).
    """
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
        raise pickle.UnpicklingError(f"bad tensor layout: size {size}, stride {stride}, offset {offset}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size}, stride {stride}, offset {offset} reaches element {last} "
            f"of a storage of {storage.size}")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * item for s in stride), writeable=False)
    return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    del requires_grad, backward_hooks, metadata
    return strided_view(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


def read_module(path) -> ScriptModule:
    """The unpickled module tree of a TorchScript archive (tensors as numpy arrays)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise TorchScriptError(f"{path} is not a TorchScript archive (not a readable zip file: {error})") from error
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise TorchScriptError(f"{path} is not a TorchScript archive: no single <root>/data.pkl in it")
        root = pickles[0][: -len("data.pkl")]
        storages = {n[len(root) + len("data/"):]: archive.read(n) for n in names
                    if n.startswith(root + "data/") and not n.endswith("/")}
        byteorder = "<"
        if root + "byteorder" in names:
            byteorder = {"little": "<", "big": ">"}.get(archive.read(root + "byteorder").decode().strip(), "?")
            if byteorder == "?":
                raise TorchScriptError(f"{path}: unknown byte order in {root}byteorder")
        with archive.open(pickles[0]) as f:
            try:
                module = _TorchScriptUnpickler(f, storages, byteorder).load()
            except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as error:
                raise TorchScriptError(f"{path}: {error}") from error
    if not isinstance(module, ScriptModule):
        raise TorchScriptError(f"{path}: data.pkl holds a {type(module).__name__}, not a TorchScript module")
    return module


def named_tensors(module: ScriptModule, prefix: str = "") -> dict[str, np.ndarray]:
    """{'net.layers.conv.weight': array, ...}: every tensor attribute of the tree, dotted names,
    in the pickled attribute order (a module's own tensors, then its submodules', depth first)."""
    tensors, children = {}, {}
    for name, value in module.attributes.items():
        if isinstance(value, np.ndarray):
            tensors[prefix + name] = value
        elif isinstance(value, ScriptModule):
            children[name] = value
    for name, child in children.items():
        tensors.update(named_tensors(child, f"{prefix}{name}."))
    return tensors


def read_tensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a TorchScript archive by dotted name; the arrays have the file's dtypes and shapes."""
    return named_tensors(read_module(path))
