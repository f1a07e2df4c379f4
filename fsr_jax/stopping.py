"""Stopping a run on SIGTERM / SIGINT (pre-emption, Ctrl-C), from process start to the end.

The first signal asks for a stop: inside the training loop the current call finishes, a
checkpoint is written and the run returns; before the loop (data preparation, restoring,
compiling) the run ends at once with one line, since there is nothing new to save. A second
signal exits immediately without saving, and says so; it counts once the first one's line is
printed (Python runs the handler once for signals that arrive before the main thread reaches
it). With several processes, every process stops at the same step: the loop agrees at each call
boundary, through JAX's preemption sync point (SIGTERM, which JAX's distributed runtime takes
over) and a gather of the SIGINT flags.

Outside the loop the handler raises wherever the main thread is, so library code on the way
may turn the stop into an error of its own (wrapping it, or failing half-way through);
`outside_loop` records that the signal came there, and `fsr_jax.main` ends such a run as the
stop it is.

Python runs a signal handler wherever the main thread is, also inside a finaliser or a garbage
collector callback (JAX registers one), where an exception is printed as "Exception ignored"
and dropped. A stop raised there is therefore kept: it is not printed, and `check()` raises it
again before the first training call and while a compilation is awaited.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable, TypeVar

import jax
import numpy as np

T = TypeVar("T")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StoppedBeforeTraining(BaseException):
    """A signal arrived before the training loop: nothing new to save; the text names the signal.
    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""


class Stopper:
    """The process's signal handling: a flag for the loop, an immediate exit on a second signal."""

    def __init__(self):
        self.signal: int | None = None
        self.in_loop = False
        #: Whether the first signal came outside the training loop, where there is nothing to save.
        self.outside_loop = False
        #: What the process does outside the training loop, for the stop message: None before
        #: training, or e.g. "evaluation" (whose results are written only at its end).
        self.during: str | None = None
        self.calls = 0
        self.reason = ""
        self.previous: dict = {}
        self.previous_unraisable_hook = None

    def __enter__(self) -> Stopper:
        """Take over SIGTERM and SIGINT (main thread only) until the block ends."""
        self.previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        self.previous_unraisable_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}
        if self.previous_unraisable_hook is not None:
            sys.unraisablehook, self.previous_unraisable_hook = self.previous_unraisable_hook, None

    def _unraisable(self, unraisable) -> None:
        """Drop a stop raised where Python cannot raise (`check` raises it again); pass on the rest."""
        if not isinstance(unraisable.exc_value, StoppedBeforeTraining):
            self.previous_unraisable_hook(unraisable)

    def check(self) -> None:
        """Raise StoppedBeforeTraining when a signal came before the training loop (the handler
        raises it at once; that raise may have been dropped, see the module docstring)."""
        if self.signal is not None and not self.in_loop:
            raise StoppedBeforeTraining(self.message())

    def message(self) -> str:
        """What a stop outside the loop did, naming the signal (which must have come)."""
        name = signal.Signals(self.signal).name
        if self.during:
            return (f"{name} during {self.during}: stopped before its results were written; rerun it "
                    "(checkpoints are untouched)")
        return f"{name} before training started: stopped, nothing to save"

    def _handle(self, signum, frame) -> None:
        del frame
        name = signal.Signals(signum).name
        if self.signal is not None:
            print(f"\n{name} again: exiting now without saving (every finished checkpoint is intact)",
                  file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signal, self.outside_loop = signum, not self.in_loop
        if self.in_loop:
            print(f"\n{name}: saving a checkpoint after the current step, then stopping "
                  "(send it again to exit at once without saving)", file=sys.stderr, flush=True)
        self.check()

    def __bool__(self) -> bool:
        return self.signal is not None

    def agreed(self) -> bool:
        """Whether to stop now, the same answer on every process (call it at each call boundary
        on all of them). With several processes, SIGTERM is JAX's preemption notice (its
        distributed runtime takes the signal over): the answer is its preemption sync point OR
        any process's own flag (SIGINT), gathered across processes. `reason` says which."""
        if jax.process_count() == 1:
            self.reason = f"signal {self.signal}"
            return bool(self)
        from jax.experimental import multihost_utils  # noqa: PLC0415

        self.calls += 1
        try:
            preempted = multihost_utils.reached_preemption_sync_point(self.calls)
        except RuntimeError:      # the preemption service is off (jax_enable_preemption_service)
            preempted = False
        flags = np.asarray(multihost_utils.process_allgather(np.int32(bool(self))))
        if preempted:
            self.reason = "preemption notice (SIGTERM) to one of the processes"
        elif flags.any():
            self.reason = f"signal on process {int(np.argmax(flags))}"
        return preempted or bool(flags.any())

    def wait(self, fn: Callable[[], T], poll_s: float = 0.1) -> T:
        """fn() run on a helper thread while this (main) thread keeps handling signals, so that a
        long compilation can be stopped: a first signal outside the loop raises here at once."""
        result: dict = {}

        def target():
            try:
                result["value"] = fn()
            except BaseException as err:  # noqa: BLE001 -- re-raised on the main thread
                result["error"] = err

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(poll_s)
            self.check()
        if "error" in result:
            raise result["error"]
        return result["value"]

