"""Signals: a stop flag in the loop, one clean line before it, an immediate exit on the second."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fsr_jax import stopping
from helpers import REPO


def send_soon(signum, delay=0.2):
    threading.Timer(delay, os.kill, (os.getpid(), signum)).start()


def test_a_signal_before_the_loop_stops_at_once_with_one_line():
    with stopping.Stopper() as stop, pytest.raises(stopping.StoppedBeforeTraining, match="SIGTERM before training"):
        send_soon(signal.SIGTERM)
        stop.wait(lambda: time.sleep(30))       # a long compilation: the signal must not wait for it
    assert stop.signal == signal.SIGTERM


def test_a_signal_in_the_loop_sets_the_flag_and_the_second_exits_without_saving(monkeypatch, capsys):
    exits = []
    monkeypatch.setattr(stopping.os, "_exit", exits.append)
    with stopping.Stopper() as stop:
        stop.in_loop = True
        os.kill(os.getpid(), signal.SIGINT)
        assert stop and stop.agreed() and not exits
        os.kill(os.getpid(), signal.SIGINT)
    assert exits == [128 + signal.SIGINT]
    err = capsys.readouterr().err
    assert "saving a checkpoint after the current step" in err
    assert "SIGINT again: exiting now without saving" in err


def test_the_previous_handlers_come_back_and_wait_returns_or_raises():
    before = signal.getsignal(signal.SIGTERM)
    with stopping.Stopper() as stop:
        assert signal.getsignal(signal.SIGTERM) != before
        assert stop.wait(lambda: 41 + 1) == 42
        with pytest.raises(ZeroDivisionError):
            stop.wait(lambda: 1 / 0)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_raised_inside_a_finaliser_is_kept_and_raised_by_check(capsys):
    # Python runs the handler wherever the main thread is; inside a finaliser (or JAX's garbage
    # collector callback) the exception is dropped. The stop must survive that, silently.
    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):   # bytecodes, where the handler runs
                pass

    with stopping.Stopper() as stop:
        SignalsWhenCollected()      # collected at once: the handler raises inside __del__
        assert stop.signal == signal.SIGTERM
        with pytest.raises(stopping.StoppedBeforeTraining, match="SIGTERM before training started"):
            stop.check()
        with pytest.raises(stopping.StoppedBeforeTraining):
            stop.wait(lambda: time.sleep(30))   # also while a compilation is awaited
    assert "Exception ignored" not in capsys.readouterr().err
    stop.in_loop = True
    stop.check()                    # in the loop a signal is a flag, not an exception


def test_a_stop_during_evaluation_says_so():
    with stopping.Stopper() as stop:
        stop.during = "evaluation"
        with pytest.raises(stopping.StoppedBeforeTraining, match="^SIGTERM during evaluation: stopped before its "
                                                                  "results were written; rerun it"):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):   # bytecodes, where the handler runs
                pass


# The job's train_and_evaluate replaced by a call that a signal interrupts and that then fails
# in its own way, as library code may (a callback's exception wrapped, a step left half-done).
INTERRUPTED_JOB = """
import os, signal, sys
from fsr_jax import main, train
from fsr_jax.data.images import DataError

def interrupted(config, workdir, stop):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes, where the handler runs
            pass
    except BaseException as err:
        raise {error}("the library's own message\\nits second line") from err

train.train_and_evaluate = interrupted
sys.argv = ["fsr_jax.main", "--config", "configs/smoke.py", "--workdir", sys.argv[1]]
main.run()
"""


@pytest.mark.parametrize("error, named", [
    ("RuntimeError", " (the interrupted call then raised RuntimeError: the library's own message)"),
    ("DataError", ""),   # an fsr_jax error: main prints it as `error: ...` and exits 1
])
def test_a_stop_that_a_library_turns_into_its_own_error_still_ends_as_the_stop(tmp_path, subprocess_env,
                                                                               error, named):
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_JOB.format(error=error), str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO, env=subprocess_env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert f"stopped: SIGTERM before training started: stopped, nothing to save{named}\n" in output
    assert "Traceback" not in output
