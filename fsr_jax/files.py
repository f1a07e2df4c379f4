"""Every file fsr_jax writes (checkpoints aside: orbax writes those) goes through `open_atomic`.

The bytes go to a temporary file created exclusively (never through a link) in the target's
folder and renamed over the target only when complete, so a kill, a full disk or a crash leaves
the old file or the new one, never half of one. A target that is a link or a folder is refused,
as is an existing file the caller's `replaces` test does not recognise as one fsr_jax wrote.
Every OSError becomes one FileWriteError line naming the path.
"""
from __future__ import annotations

import collections
import contextlib
import io
import os
import pathlib
import stat
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image

from fsr_jax.errors import FileReadError, FileWriteError, FsrJaxError


def _refusal(path: pathlib.Path, replaces: Callable[[pathlib.Path], bool] | None) -> str | None:
    if path.is_symlink():
        return f"{path} is a symbolic link; fsr_jax does not write through links"
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    if path.exists() and not path.is_file():
        return f"{path} is not a regular file (a device or a pipe); not replaced"
    if path.is_file() and replaces is not None and not replaces(path):
        return f"{path} exists and is not a file fsr_jax wrote; not replaced (move it or choose another name)"
    return None


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, replaces: Callable[[pathlib.Path], bool] | None = None
                ) -> Iterator[BinaryIO]:
    """A binary file object whose bytes land at `path` when the block ends without an error.

    Args:
      path: the file to write; its folder is created.
      replaces: for an existing `path`, whether it may be replaced (e.g. it is a weights file);
        None: any regular file may be.

    Raises:
      FileWriteError: naming `path`, when it is refused or an OSError occurs (nothing is left:
        the temporary file is removed and `path` is as it was).
    """
    path = pathlib.Path(path).expanduser()
    refusal = _refusal(path, replaces)
    if refusal:
        raise FileWriteError(refusal)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        if isinstance(err, FsrJaxError):  # already one line (e.g. raised by the caller's block)
            raise
        raise FileWriteError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def output_names(paths: list[pathlib.Path]) -> list[str]:
    """The name each input's outputs take (<name>.png): the file's stem, or its whole name
    (a.jpg -> a.jpg.png) when another input has the same stem (letter case ignored, for file
    systems that ignore it), so that no two inputs share an output."""
    stems = collections.Counter(p.stem.casefold() for p in paths)
    return [p.name if stems[p.stem.casefold()] > 1 else p.stem for p in paths]


def writable_folder(path: str | os.PathLike) -> pathlib.Path:
    """`path` as a folder this process can write into (created if missing), checked by creating
    and removing a file in it; FileWriteError naming it otherwise (a file, read-only...)."""
    path = pathlib.Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise FileWriteError(f"cannot write into the folder {path}: {err.strerror or err}") from err
    return path


def write_bytes(path: str | os.PathLike, data: bytes,
                replaces: Callable[[pathlib.Path], bool] | None = None) -> pathlib.Path:
    """Write `data` to `path` atomically (`open_atomic`); return the path."""
    with open_atomic(path, replaces) as out:
        out.write(data)
    return pathlib.Path(path).expanduser()


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write `text` (UTF-8) to `path` atomically (`open_atomic`); return the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_png(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
    """Write a uint8 image (H, W) or (H, W, 3|4) to `path` as PNG atomically; return the path."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())


def read_bytes(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes, checked before any is read.

    Raises:
      FileReadError: naming `path`, when it is missing, not a regular file (a folder, a device,
        a pipe), larger than `limit`, or unreadable.
    """
    path = pathlib.Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe is refused, not waited on
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileReadError(f"{path}: not a regular file (a folder, device or pipe); not read as {what}")
            if info.st_size > limit:
                raise FileReadError(f"{path}: {info.st_size:,} bytes, more than {limit:,} for {what}; not read")
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(info.st_size + 1)
            if len(data) > limit:  # grew since
                raise FileReadError(f"{path}: more than {limit:,} bytes for {what}; not read")
            return data
        finally:
            os.close(fd)
    except FileReadError:
        raise
    except OSError as err:
        raise FileReadError(f"{path}: cannot read {what}: {err.strerror or err}") from err
