"""Signals: a stop flag in the loop, one clean line before it, an immediate exit on the second."""
import os
import signal
import threading
import time

import pytest

from fsr_jax import stopping


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
