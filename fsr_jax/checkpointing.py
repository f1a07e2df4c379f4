"""Orbax checkpoints of a stage: train state (params, Adam states, step, RNG) + data iterator.

Saves are atomic (orbax writes a temporary folder and renames it when complete), so a kill at
any moment, even mid-save, leaves the newest complete checkpoint usable.
"""
from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE, DATA = "state", "data"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, empty or unreadable; the message names it."""


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


def manager(directory: str | pathlib.Path, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager over `directory` (created unless read-only) keeping the newest `keep`."""
    directory = pathlib.Path(directory).expanduser().resolve()
    if read_only and not directory.is_dir():
        raise CheckpointError(f"no checkpoint folder at {directory}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory, options=options, item_names=(STATE, DATA))


def save(mgr: ocp.CheckpointManager, step: int, state: Any, data_state: dict) -> None:
    """Write checkpoint `step` (train state + JSON data-iterator state) and wait for it."""
    mgr.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state), DATA: ocp.args.JsonSave(data_state)}), force=True)
    mgr.wait_until_finished()


def restore(mgr: ocp.CheckpointManager, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """(state, data-iterator state, step) of checkpoint `step` (default: the newest).

    `abstract_state` gives the tree, shapes, dtypes and shardings (e.g. from jax.eval_shape).
    """
    step = mgr.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {mgr.directory}")
    try:
        restored = mgr.restore(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(abstract_state), DATA: ocp.args.JsonRestore()}))
    except Exception as err:  # orbax raises many kinds; the user needs the folder
        raise CheckpointError(f"cannot read checkpoint {step} in {mgr.directory}: {err}") from err
    return restored[STATE], restored[DATA], step


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
    """(names of the networks whose parameters checkpoint `step` (default: the newest) of a
    stage's checkpoint folder holds, trained and frozen, sorted; its step). Reads metadata only."""
    directory = pathlib.Path(directory).expanduser().resolve()
    path, step = _state_path(directory, step)
    try:
        tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
    except Exception as err:  # orbax raises many kinds; the user needs the folder
        raise CheckpointError(f"cannot read checkpoint {step} in {directory}: {err}") from err
    return tuple(sorted({*tree.get("frozen", {}), *tree.get("nets", {})})), step


def restore_params(directory: str | pathlib.Path, names: tuple[str, ...], step: int | None = None) -> tuple[dict, int]:
    """Only the parameters of networks `names` from a stage's checkpoint folder, as numpy
    arrays on the host, whatever devices wrote them (no optimizer states needed).

    Returns ({name: params}, step).
    """
    directory = pathlib.Path(directory).expanduser().resolve()
    path, step = _state_path(directory, step)
    try:
        handler = ocp.PyTreeCheckpointHandler()
        as_numpy = jax.tree_util.tree_map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), handler.metadata(path).tree)
        tree = handler.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    except Exception as err:  # orbax raises many kinds; the user needs the folder
        raise CheckpointError(f"cannot read checkpoint {step} in {directory}: {err}") from err
    nets = {**tree.get("frozen", {}), **{k: v["params"] for k, v in tree.get("nets", {}).items()}}
    missing = [n for n in names if n not in nets]
    if missing:
        raise CheckpointError(f"checkpoint {step} in {directory} has no network {missing}")
    return {n: nets[n] for n in names}, step
