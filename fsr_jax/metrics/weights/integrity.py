"""SHA-256 checks of the metric weight cache: archives, extracted files, folders, converted arrays."""
from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

from fsr_jax.metrics.weights.errors import WeightsHashError

_CHUNK = 1 << 20
# (path, size, mtime_ns, expected): files already verified in this process.
_verified: set[tuple[str, int, int, str]] = set()


def file_sha256(path: os.PathLike | str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: os.PathLike | str) -> str:
    """Hex SHA-256 of a folder's files: over the sorted lines '<relative path> <file sha256>\\n'.

    `__pycache__` folders are left out (Python writes them when the sources are imported).
    """
    folder = pathlib.Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.relative_to(folder).parts)
    lines = "".join(f"{p.relative_to(folder).as_posix()} {file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def arrays_sha256(flat: dict[str, np.ndarray]) -> str:
    """Hex SHA-256 of named arrays, independent of how they were stored (npz zip timestamps, order):
    over the sorted names, each with its dtype, shape and C-order bytes."""
    digest = hashlib.sha256()
    for name in sorted(flat):
        array = np.ascontiguousarray(flat[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check(actual: str, expected: str, path: os.PathLike | str, fix: str) -> None:
    """Raises WeightsHashError naming the file, both hashes and `fix` unless actual == expected."""
    if actual != expected:
        raise WeightsHashError(f"{path} has sha256 {actual}, expected {expected}; it is not used. {fix}")


def verify_file(path: os.PathLike | str, expected: str, fix: str) -> None:
    """Checks a file against its pinned hash (each unchanged file hashed once per process)."""
    stat = os.stat(path)
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns, expected)
    if key not in _verified:
        check(file_sha256(path), expected, path, fix)
        _verified.add(key)
