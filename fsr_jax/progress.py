"""What a run's log says: the progress line with its ETA, what each loss term measures, and
libraries' chatter kept off."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from absl import logging


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


class _LibraryInfoFilter:
    """Drops INFO (and lower) records logged from inside orbax, which logs every file it writes."""

    NOISY = ("/orbax/",)

    def filter(self, record) -> bool:
        return record.levelno > 20 or not any(part in record.pathname for part in self.NOISY)


def quiet_library_logs() -> None:
    """Keep the run's log readable: orbax's INFO chatter off, its warnings and errors kept."""
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
