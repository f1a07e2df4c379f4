"""Reads a state dict saved by torch.save's legacy (pre-1.6, non-zip) format with pickle and numpy:
no torch, no code run.

A legacy file is five pickles and the raw storages, one after the other:

1. the magic number 0x1950a86a20f9469cfc6c; 2. the protocol version 1001; 3. system info
   ({'little_endian': bool, ...});
4. the object, here an OrderedDict {name: tensor}. A tensor is
   `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`, where
   `storage` is a persistent id `('storage', torch.<Type>Storage, key, location, numel, view)`;
5. the sorted list of storage keys; then, for each key, an 8-byte element count and the
   storage's raw bytes.

The storages come after the pickle that uses them, so tensors are unpickled as placeholders and
filled in once the storages are read. The Unpickler maps those torch names to stand-ins and
refuses every other global: reading a file never imports torch nor calls anything it names.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct

import numpy as np

from fsr_jax.metrics.weights.torchscript import STORAGE_DTYPES, strided_view

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


class LegacyTorchError(ValueError):
    """A file that is not a legacy torch.save state dict, or whose storages do not add up."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(np.dtype(STORAGE_DTYPES[name]))
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name} from a torch state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a torch state dict")
        return _StorageRef(str(pid[2]), pid[1].dtype, pid[4])


def _load(stream: io.BytesIO, what: str):
    try:
        return _StateDictUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise LegacyTorchError(f"cannot read the {what}: {error}") from error


def read_state_dict(data: bytes, name: str = "the file") -> dict[str, np.ndarray]:
    """{'conv1.weight': array, ...} of a legacy torch.save file's bytes, in the file's order,
    with its dtypes and shapes. Raises LegacyTorchError naming `name` when it is not one."""
    stream = io.BytesIO(data)
    try:
        if _load(stream, "magic number") != MAGIC_NUMBER:
            raise LegacyTorchError("no legacy torch.save magic number (a zip-format file or another file)")
        if _load(stream, "protocol version") != PROTOCOL_VERSION:
            raise LegacyTorchError(f"protocol version is not {PROTOCOL_VERSION}")
        info = _load(stream, "system info")
        byteorder = "<" if not isinstance(info, dict) or info.get("little_endian", True) else ">"
        state = _load(stream, "state dict")
        keys = _load(stream, "storage keys")
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise LegacyTorchError("it does not hold a state dict")
        storages = {}
        refs = {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, _TensorRef)}
        for key in keys:
            if str(key) not in refs:
                raise LegacyTorchError(f"storage {key} is used by no tensor")
            ref = refs[str(key)]
            header = stream.read(8)
            if len(header) != 8:
                raise LegacyTorchError(f"storage {key} is cut short")
            numel = struct.unpack(byteorder + "q", header)[0]
            raw = stream.read(numel * ref.dtype.itemsize)
            if numel != ref.numel or len(raw) != numel * ref.dtype.itemsize:
                raise LegacyTorchError(f"storage {key} holds {len(raw)} bytes, {ref.numel} elements expected")
            storages[ref.key] = np.frombuffer(raw, ref.dtype.newbyteorder(byteorder)).astype(ref.dtype)
        tensors = {}
        for tensor_name, ref in state.items():
            if not isinstance(ref, _TensorRef) or ref.storage.key not in storages:
                raise LegacyTorchError(f"entry {tensor_name!r} is not a tensor with a stored storage")
            tensors[str(tensor_name)] = strided_view(storages[ref.storage.key], ref.offset, ref.size, ref.stride)
        return tensors
    except (LegacyTorchError, pickle.UnpicklingError) as error:
        raise LegacyTorchError(f"{name} is not a readable legacy torch state dict: {error}") from error
