"""Orbax checkpoints of a stage: train state (params, Adam states, step, RNG) + data iterator.

Saves are atomic (orbax writes a temporary folder and renames it when complete), so a kill at
any moment, even mid-save, leaves the newest complete checkpoint usable. A checkpoint damaged
later (a truncated, overwritten or deleted file) is skipped with a warning naming its folder:
training resumes from the newest one that reads and renames the damaged ones to
`<step>.corrupt-<n>` (kept, outside orbax's step names, so that a new checkpoint of that step
does not collide with them); readers (`restore_params`, `saved_networks`) use the newest one
that reads and move nothing.
"""
from __future__ import annotations

import inspect
import pathlib
import sys
from typing import Any, Callable, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fsr_jax.errors import FsrJaxError
from fsr_jax.mesh import wait_for_every_process

STATE, DATA = "state", "data"
NO_SPACE = "no space left on device"
T = TypeVar("T")


class CheckpointError(FsrJaxError, RuntimeError):
    """A checkpoint folder is missing, empty or unreadable; the message names it."""


class ShapeMismatchError(CheckpointError):
    """An intact checkpoint holds arrays of other shapes than the state it is restored into."""


def _reason(err: BaseException, limit: int = 300) -> str:
    """The first line of the error at the root of `err`'s causes (orbax wraps TensorStore's
    readable one in a generic one), shortened: these errors run to pages."""
    err = _root_cause(err)
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[:limit] + "..."


_abandoned_reads_silenced = False


def silence_abandoned_reads() -> None:
    """Keep the log readable after a failed read: orbax leaves TensorStore reads of the damaged
    checkpoint in flight, and Python would print a traceback for each (hundreds) when their
    results reach the closed event loop or their coroutines are collected. Drops exactly those
    reports, from now on; everything else still goes to the previous `sys.unraisablehook`."""
    global _abandoned_reads_silenced
    if _abandoned_reads_silenced:
        return
    _abandoned_reads_silenced = True
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        exc, obj = unraisable.exc_value, unraisable.object
        closed_loop = isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
        orbax_read = inspect.iscoroutine(obj) and "/orbax/" in obj.cr_code.co_filename
        if not (closed_loop or orbax_read):
            previous(unraisable)

    sys.unraisablehook = hook


def unreadable(directory: pathlib.Path, step: int, err: BaseException) -> str:
    """'checkpoint N at <folder> cannot be read (<reason>)'; quiets the failed read's leftovers."""
    silence_abandoned_reads()
    return f"checkpoint {step} at {pathlib.Path(directory) / str(step)} cannot be read ({_reason(err)})"


def step_folders(directory: str | pathlib.Path) -> list[int]:
    """Steps of the checkpoint folders in `directory` (named by their step), newest first."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted((int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()), reverse=True)


def set_aside(directory: str | pathlib.Path, step: int) -> pathlib.Path:
    """Rename checkpoint folder `step` to `<step>.corrupt-<n>` (the first free n) and return
    the new path. Nothing is deleted; orbax ignores the new name."""
    directory = pathlib.Path(directory)
    n = 1
    while (directory / f"{step}.corrupt-{n}").exists():
        n += 1
    target = directory / f"{step}.corrupt-{n}"
    (directory / str(step)).rename(target)
    return target


def latest_step(directory: str | pathlib.Path) -> int | None:
    """The newest complete checkpoint step in `directory` (None if none, or no folder).

    Complete checkpoints are folders named by their step; orbax writes into
    `<step>.orbax-checkpoint-tmp*` and renames only when done.
    """
    directory = pathlib.Path(directory).expanduser()
    if not directory.is_dir():
        return None
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / STATE).is_dir()]
    return max(steps, default=None)


def layout(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """{'nets.tnet.params.Conv_0.kernel': (shape, dtype name), ...} of a state tree, or of a
    checkpoint's metadata tree: what must agree for a checkpoint to restore into a state."""
    return {k: (tuple(v.shape), str(np.dtype(v.dtype))) for k, v in ocp.tree.to_flat_dict(tree, sep=".").items()}


def saved_layout(directory: str | pathlib.Path, step: int | None = None) -> tuple[int, dict, dict | None] | None:
    """(step, `layout` of its state, its data-iterator state or None where that does not read)
    of checkpoint `step`, by default of the newest checkpoint in `directory` whose metadata
    reads; None if there is none. Reads metadata only (a damaged checkpoint is dealt with by
    `restore`)."""
    directory = pathlib.Path(directory).expanduser().resolve()
    for step in step_folders(directory) if step is None else [step]:
        try:
            tree = ocp.PyTreeCheckpointHandler().metadata(directory / str(step) / STATE).tree
            arrays = layout(tree)
        except Exception:  # noqa: BLE001 (unreadable: restore names it and falls back)
            continue
        try:
            data_state = ocp.JsonCheckpointHandler().restore(directory / str(step) / DATA)
        except Exception:  # noqa: BLE001
            data_state = None
        return step, arrays, data_state if isinstance(data_state, dict) else None
    return None


def manager(directory: str | pathlib.Path, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager over `directory` (created unless read-only) keeping the newest `keep`."""
    directory = pathlib.Path(directory).expanduser().resolve()
    if read_only and not directory.is_dir():
        raise CheckpointError(f"no checkpoint folder at {directory}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory, options=options, item_names=(STATE, DATA))


def _root_cause(err: BaseException) -> BaseException:
    seen = {id(err)}
    while (err.__cause__ or err.__context__) is not None and id(err.__cause__ or err.__context__) not in seen:
        err = err.__cause__ or err.__context__
        seen.add(id(err))
    return err


def save(mgr: ocp.CheckpointManager, step: int, state: Any, data_state: dict) -> None:
    """Write checkpoint `step` (train state + JSON data-iterator state) and wait for it.

    Raises:
      CheckpointError: one line, when the file system refuses the write (a full disk: "no space
        left on device writing checkpoint N in PATH"); orbax renames a checkpoint into place
        only when complete, so the newest complete one is kept and a rerun resumes from it.
    """
    # Every process enters orbax's save together: its own barriers give up sooner than a loaded
    # machine's slowest process may take to arrive.
    wait_for_every_process(f"save-{step}")
    try:
        mgr.save(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardSave(state), DATA: ocp.args.JsonSave(data_state)}), force=True)
        mgr.wait_until_finished()
    except Exception as err:  # orbax and TensorStore wrap the OSError in their own kinds
        root = _root_cause(err)
        if isinstance(root, OSError):
            reason = (root.strerror or str(root)).lower()
        elif NO_SPACE in str(root).lower():  # TensorStore reports it in a ValueError's text
            reason = NO_SPACE
        else:
            raise
        raise CheckpointError(f"{reason} writing checkpoint {step} in "
                              f"{mgr.directory}; a rerun resumes from the newest complete checkpoint") from err


def _agreed(ok: bool) -> tuple[bool, bool]:
    """(any process, every process) has `ok`: one process reading a checkpoint that another
    cannot would train from different states."""
    if jax.process_count() == 1:
        return ok, ok
    from jax.experimental import multihost_utils  # noqa: PLC0415

    flags = np.asarray(multihost_utils.process_allgather(np.int32(ok)))
    return bool(flags.any()), bool(flags.all())


def restore(mgr: ocp.CheckpointManager, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """(state, data-iterator state, step) of checkpoint `step`, by default of the newest one
    that reads.

    Newer checkpoints that do not read are logged by path and, once an older one has been
    read, renamed to `<step>.corrupt-<n>` (by the primary process). `abstract_state` gives
    the tree, shapes, dtypes and shardings (e.g. from jax.eval_shape).

    Raises:
      CheckpointError: naming the folder, when there is no checkpoint or none reads (then
        nothing is renamed); ShapeMismatchError (a CheckpointError) when an intact checkpoint
        holds arrays of other shapes than `abstract_state` (nothing is renamed either).
    """
    directory = pathlib.Path(mgr.directory)
    args = ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract_state), DATA: ocp.args.JsonRestore()})

    def read(s: int) -> tuple[Any, dict]:
        try:
            restored = mgr.restore(s, args=args)
        except Exception as err:  # orbax raises many kinds; the user needs the folder
            silence_abandoned_reads()
            found = saved_layout(directory, s)
            if found is not None and found[1] != layout(abstract_state):  # intact, but not this config's
                raise ShapeMismatchError(
                    f"checkpoint {s} at {directory / str(s)} holds networks of other shapes than the "
                    f"config's: resume with the config it was trained with") from err
            raise CheckpointError(unreadable(directory, s, err)) from err
        return restored[STATE], restored[DATA]

    if step is not None:
        return (*read(step), step)
    steps = sorted(mgr.all_steps(), reverse=True)
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}")
    bad = []
    for s in steps:
        try:
            restored, problem = read(s), None
        except ShapeMismatchError:
            raise
        except CheckpointError as err:
            restored, problem = None, err
        some, every = _agreed(problem is None)
        if some and not every:
            raise CheckpointError(f"checkpoint {s} at {directory / str(s)} reads on some processes and not "
                                  f"on others{f' (here: {problem})' if problem else ''}; check the storage")
        if problem is not None:
            logging.warning("%s; trying the one before", problem)
            bad.append(str(problem))
            continue
        skipped = [b for b in steps if b > s]
        if skipped:
            if jax.process_index() == 0:
                for b in skipped:
                    moved = set_aside(directory, b)
                    logging.warning("moved %s aside to %s: it does not read (see above); it is kept for a "
                                    "look and can be deleted", directory / str(b), moved)
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils  # noqa: PLC0415

                multihost_utils.sync_global_devices("fsr_jax: unreadable checkpoints moved aside")
            mgr.reload()
        return (*restored, s)
    raise CheckpointError(f"no checkpoint in {directory} can be read:\n  - " + "\n  - ".join(bad) +
                          f"\nnothing was moved; to start the stage afresh, move {directory} aside")


def _newest_readable(directory: pathlib.Path, read: Callable[[pathlib.Path], T],
                     step: int | None) -> tuple[T, int]:
    """(read(state folder), step) of checkpoint `step`, or by default of the newest checkpoint
    of `directory` that reads (newer ones that do not are logged by path; nothing is moved).

    Raises:
      CheckpointError: naming the folder, when there is no such checkpoint or it (any, by
        default) does not read; for a given step the message names the newest one that reads.
    """
    if step is not None:
        path, _ = _state_path(directory, step)
        try:
            return read(path), step
        except Exception as err:  # orbax raises many kinds; the user needs the folder
            others = [s for s in step_folders(directory) if s != step]
            usable = next((s for s in others if _reads(directory, s, read)), None)
            hint = (f"the newest readable checkpoint there is {usable}: use that step, or move "
                    f"{directory / str(step)} aside" if usable is not None else
                    "no other checkpoint there reads")
            raise CheckpointError(f"{unreadable(directory, step, err)}; {hint}") from err
    steps = step_folders(directory)
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}")
    bad = []
    for s in steps:
        try:
            result = read(directory / str(s) / STATE)
        except Exception as err:  # orbax raises many kinds; the user needs the folder
            bad.append(unreadable(directory, s, err))
            continue
        for problem in bad:
            logging.warning("%s; using checkpoint %d, the newest that reads", problem, s)
        return result, s
    raise CheckpointError(f"no checkpoint in {directory} can be read:\n  - " + "\n  - ".join(bad))


def _reads(directory: pathlib.Path, step: int, read: Callable[[pathlib.Path], Any]) -> bool:
    try:
        read(directory / str(step) / STATE)
    except Exception:  # noqa: BLE001 (any failure: not readable)
        silence_abandoned_reads()
        return False
    return True


def _read_tree(path: pathlib.Path) -> dict:
    """Every array of a state folder, as numpy arrays on the host, whatever devices wrote them."""
    handler = ocp.PyTreeCheckpointHandler()
    as_numpy = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), handler.metadata(path).tree)
    return handler.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def _networks(tree: dict) -> dict[str, Any]:
    """{name: params} of the trained and frozen networks of a state tree."""
    return {**tree.get("frozen", {}), **{k: v["params"] for k, v in tree.get("nets", {}).items()}}


def _state_path(directory: pathlib.Path, step: int | None) -> tuple[pathlib.Path, int]:
    """(the state folder of checkpoint `step` (default: the newest) in `directory`, its step)."""
    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    path = directory / str(step) / STATE
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint {step} in {directory} (there is no folder {path})")
    return path, step


def saved_networks(directory: str | pathlib.Path, step: int | None = None) -> tuple[tuple[str, ...], int]:
    """(names of the networks whose parameters checkpoint `step` of a stage's checkpoint folder
    holds, trained and frozen, sorted; its step). A given step: its metadata only; by default
    the newest checkpoint that reads in full (newer ones that do not are logged by path)."""
    directory = pathlib.Path(directory).expanduser().resolve()
    if step is None:
        tree, step = _newest_readable(directory, _read_tree, None)
        return tuple(sorted(_networks(tree))), step
    path, step = _state_path(directory, step)
    try:
        tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
    except Exception as err:  # orbax raises many kinds; the user needs the folder
        raise CheckpointError(unreadable(directory, step, err)) from err
    return tuple(sorted({*tree.get("frozen", {}), *tree.get("nets", {})})), step


def restore_params(directory: str | pathlib.Path, names: tuple[str, ...], step: int | None = None) -> tuple[dict, int]:
    """Only the parameters of networks `names` from checkpoint `step` of a stage's checkpoint
    folder (by default the newest that reads; newer ones that do not are logged by path), as
    numpy arrays on the host, whatever devices wrote them (no optimizer states needed).

    Returns ({name: params}, step).
    """
    directory = pathlib.Path(directory).expanduser().resolve()
    tree, step = _newest_readable(directory, _read_tree, step)
    nets = _networks(tree)
    missing = [n for n in names if n not in nets]
    if missing:
        raise CheckpointError(f"checkpoint {step} in {directory} has no network {missing}")
    return {n: nets[n] for n in names}, step
