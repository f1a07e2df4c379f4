"""What a run records: scalars to `metrics.jsonl`, image grids to `images/*.png` in the stage
folder, and the same to TensorBoard event files, written without TensorFlow (never a crash for
want of it)."""
from __future__ import annotations

import importlib
import json
import pathlib
from typing import Any

import numpy as np
from absl import logging

from fsr_jax import files


def truncate_jsonl(path: pathlib.Path, last_step: int) -> int:
    """Drop the lines of a metrics JSONL file past step `last_step`, and any that do not parse
    (a kill mid-line), atomically; return how many were dropped (0, untouched, if none)."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keep = json.loads(line)["step"] <= last_step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        files.write_text(path, "".join(kept))
    return dropped


class SummaryWriter:
    """Scalars to JSONL + TensorBoard, image grids to PNG + TensorBoard (primary process only).

    `resume_step`: the step training continues from. Lines of metrics.jsonl past it were written
    after the checkpoint resumed from (by a run killed or stopped before its next checkpoint) and
    are logged again now: they are dropped first, so that each step has one line.
    """

    def __init__(self, stage_dir: pathlib.Path, enabled: bool = True, resume_step: int | None = None):
        self.dir = pathlib.Path(stage_dir)
        self.enabled = enabled
        self.tensorboard = None
        if not enabled:
            return
        (self.dir / "images").mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            dropped = truncate_jsonl(self.dir / "metrics.jsonl", resume_step)
            if dropped:
                logging.info("metrics.jsonl: %d lines past step %d dropped (they are logged again)",
                             dropped, resume_step)
        self.jsonl = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tensorboard = tensorboard_writer(self.dir / "tensorboard")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
        self.jsonl.flush()
        if self.tensorboard is not None:
            self.tensorboard.write_scalars(step, values)

    def images(self, step: int, grids: dict[str, np.ndarray]) -> None:
        """grids: name -> uint8 (H, W, 3)."""
        if not self.enabled:
            return
        for name, grid in grids.items():
            files.write_png(self.dir / "images" / f"{name.replace('/', '_')}_{step:08d}.png", grid)
        if self.tensorboard is not None:
            self.tensorboard.write_images(step, {k: v[None] for k, v in grids.items()})

    def flush(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def tensorboard_writer(logdir: pathlib.Path) -> Any:
    """A clu MetricWriter of TensorBoard event files in `logdir`, written without TensorFlow
    (`fsr_jax.event_writer`, in a background thread), or None (logged) where that fails."""
    try:
        event_writer = importlib.import_module("fsr_jax.event_writer")
        return event_writer.create_writer(logdir)
    except Exception as err:  # e.g. tensorboard missing, or the folder not writable
        logging.warning("TensorBoard summaries off (%s); scalars go to metrics.jsonl only", err)
        return None
