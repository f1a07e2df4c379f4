"""The one base class of every error fsr_jax reports to a user as one line.

Each command catches `FsrJaxError` and prints its message, which names the file, folder, field
or flag at fault; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class FsrJaxError(Exception):
    """An error a user can act on; its message is one line naming what is wrong."""


class FileWriteError(FsrJaxError, OSError):
    """A file could not be written (or was refused: a link, a folder, a file fsr_jax did not write)."""


class FileReadError(FsrJaxError, OSError):
    """A file was not read: missing, not a regular file, larger than its bound, or unreadable."""
