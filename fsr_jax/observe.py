"""What a run shows: a progress line, scalar and image summaries, never a crash for want of TF.

Scalars always go to `metrics.jsonl` and image grids to `images/*.png` in the stage folder;
the same go to TensorBoard event files too, written without TensorFlow.
"""
from __future__ import annotations

import importlib
import json
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from PIL import Image, ImageDraw, ImageFont

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


def explain_terms(names, term_meanings: dict[str, str]) -> str:
    """One line naming what each logged loss term measures: `term_meanings` (a stage's, by the
    last part of a term's name), logged once per stage so that a value can be read without the source."""
    meanings = {}
    for name in sorted(names):
        meanings.setdefault(term_meanings.get(name.rsplit("/", 1)[-1], "see the stage's step"), []).append(name)
    return "loss terms: " + "; ".join(f"{', '.join(n)}: {m}" for m, n in meanings.items())


class Progress:
    """The progress line: stage, epoch, step, images/s and ETA, timed from `start` (after
    compilation and the first call), so neither enters the rate. The images/s are those since
    the previous line; the ETA uses the mean rate since `start`, so that one slow interval (a
    checkpoint written, a busy machine) does not swing it. `later(seconds_per_step)` predicts
    the seconds of the stages after this one, for the ETA of the whole run."""

    def __init__(self, stage: str, total_steps: int, steps_per_epoch: int, batch_size: int,
                 later: Callable[[float], float] | None = None):
        self.stage, self.total, self.per_epoch, self.batch = stage, total_steps, steps_per_epoch, batch_size
        self.later = later
        self.last_step, self.last_time = 0, None
        self.first_step, self.first_time = 0, None

    def start(self, step: int) -> None:
        """Start timing at `step` (steps done)."""
        self.last_step, self.last_time = step, time.perf_counter()
        self.first_step, self.first_time = self.last_step, self.last_time

    def seconds_since_line(self) -> float:
        """Seconds since the previous line (0 before `start`)."""
        return time.perf_counter() - self.last_time if self.last_time is not None else 0.0

    def line(self, step: int, metrics: dict[str, float]) -> tuple[str, float]:
        """(the line, images/s since the previous line; 0 before `start`) at `step` (steps done)."""
        now = time.perf_counter()
        steps_timed = step - self.last_step
        rate = steps_timed * self.batch / (now - self.last_time) if self.last_time and steps_timed else 0.0
        if self.last_time is not None:
            self.last_step, self.last_time = step, now
        eta = "ETA ?"
        if rate > 0:
            seconds_per_step = (now - self.first_time) / (step - self.first_step)
            eta = f"ETA {format_seconds((self.total - step) * seconds_per_step)}"
            if self.later is not None:
                whole = (self.total - step) * seconds_per_step + self.later(seconds_per_step)
                eta += f" (all stages {format_seconds(whole)})"
        epoch = step // self.per_epoch + 1
        epochs = -(-self.total // self.per_epoch)
        terms = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        speed = f"{rate:.1f} img/s" if rate > 0 else "? img/s"
        text = (f"[{self.stage}] epoch {min(epoch, epochs)}/{epochs} step {step}/{self.total} "
                f"{speed} {eta} | {terms}")
        return text, rate


def format_seconds(seconds: float) -> str:
    """12h03m, 4m05s, 9s or '?' for an unknown time."""
    if not np.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def to_panel(images: jax.Array, size: int, kind: str = "rgb") -> jax.Array:
    """One column of an image grid: (N, h, w, C) -> float32 (N, size, size, 3) in [0, 1].

    Nearest-neighbour upscaling. kind 'rgb': [0, 1] images; 'binary': {0, 1} edge maps;
    'signed': DoG maps, shown as 0.5 + 4 x.
    """
    images = jnp.asarray(images, jnp.float32)
    if kind == "signed":
        images = 0.5 + 4.0 * images
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    factor = size // images.shape[1]
    images = jnp.repeat(jnp.repeat(images, factor, axis=1), factor, axis=2)
    return jnp.clip(images, 0.0, 1.0)


def image_grid(columns: list[np.ndarray]) -> np.ndarray:
    """Panels side by side, faces one per row: list of (N, S, S, 3) in [0, 1] -> uint8 (N*S, P*S, 3)."""
    rows = np.concatenate([np.asarray(c) for c in columns], axis=2)     # (N, S, P*S, 3)
    return np.round(255.0 * rows.reshape(-1, *rows.shape[2:])).astype(np.uint8)


def titled_grid(columns: list[np.ndarray], titles: list[str] | None) -> np.ndarray:
    """`image_grid` of the columns, with a title over each column when `titles` are given."""
    grid = image_grid(columns)
    return titled(grid, titles) if titles else grid


def titled(grid: np.ndarray, titles: list[str]) -> np.ndarray:
    """A title band over an image grid of len(titles) equal columns: uint8 (H, W, 3) ->
    uint8 (H + band, W, 3), each title centred over its column in black on white, in the largest
    font size from 12 down to 6 at which the longest title fits its column."""
    height, width = grid.shape[:2]
    column = width // len(titles)
    for size in range(12, 5, -1):
        font = ImageFont.load_default(size=size)
        if max(font.getlength(t) for t in titles) <= column - 2:
            break
    band = size + 6
    canvas = Image.new("RGB", (width, height + band), "white")
    canvas.paste(Image.fromarray(grid), (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, title in enumerate(titles):
        draw.text((i * column + column / 2, band / 2), title, fill="black", font=font, anchor="mm")
    return np.asarray(canvas)


class _LibraryInfoFilter:
    """Drops INFO (and lower) records logged from inside orbax, which logs every file it writes."""

    NOISY = ("/orbax/",)

    def filter(self, record) -> bool:
        return record.levelno > 20 or not any(part in record.pathname for part in self.NOISY)


def quiet_library_logs() -> None:
    """Keep the run's log readable: orbax's INFO chatter off, its warnings and errors kept."""
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
