"""One run per workdir: the primary process holds an exclusive lock on `W/run.lock` while it trains.

The lock is the kernel's (flock), released when the process ends however it ends, so a run
killed with SIGKILL leaves no stale lock: the file stays, naming its last holder, and the next
run takes it. A second run of the same workdir is refused before any work, with one line naming
the holder.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import pathlib
import socket
from collections.abc import Iterator

from fsr_jax.errors import FileWriteError, FsrJaxError

LOCK_FILE = "run.lock"


class WorkdirBusyError(FsrJaxError):
    """Another run holds the workdir's lock; the message names the holder."""


def _holder() -> str:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"process {os.getpid()} on {socket.gethostname()} since {now}"


@contextlib.contextmanager
def hold(workdir: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold `workdir`'s lock for the block (created with the folder); nothing when not `enabled`
    (processes other than the primary one of a group).

    Raises:
      WorkdirBusyError: another run holds it (naming that run's process, host and start).
      FileWriteError: the workdir cannot be created or written (it is a file, read-only...).
    """
    if not enabled:
        yield
        return
    path = pathlib.Path(workdir).expanduser() / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise FileWriteError(f"cannot use {path.parent} as the workdir: {err.strerror or err}") from err
    with os.fdopen(fd, "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock.read().strip() or "another process"
            raise WorkdirBusyError(f"{path.parent} is being trained by another run ({holder}); wait for "
                                   f"it to end or stop it, or train in another --workdir") from None
        except OSError as err:  # e.g. a file system without locks
            raise FileWriteError(f"cannot lock {path}: {err.strerror or err}") from err
        try:
            lock.truncate(0)
            lock.write(_holder() + "\n")
            lock.flush()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
