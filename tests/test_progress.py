"""The progress line: rate and ETA from `start` on, the whole run's ETA, loss terms explained."""
import inspect
import re

import pytest

from fsr_jax import progress, stages


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", fake)
    return fake


def test_the_first_line_has_no_rate_and_later_ones_exclude_the_compilation(clock):
    shown = progress.Progress("degradation", total_steps=1000, steps_per_epoch=100, batch_size=16,
                                later=lambda seconds_per_step: 2000 * seconds_per_step * 3)
    clock.now += 300                              # compilation and the first step
    line, rate = shown.line(1, {"denet/content": 0.5})
    assert rate == 0 and "? img/s ETA ?" in line and "step 1/1000" in line
    shown.start(1)
    clock.now += 99 * 0.5                         # 99 steps at 0.5 s
    line, rate = shown.line(100, {"denet/content": 0.25})
    assert rate == pytest.approx(32.0)            # 16 images / 0.5 s
    # this stage: 900 steps x 0.5 s = 7m30s; all: + 2000 x 0.5 x 3 = 3000 s -> 57m30s
    assert "ETA 7m30s (all stages 57m30s)" in line
    assert "epoch 2/10" in line


def test_every_loss_term_a_stage_logs_is_explained_by_that_stage():
    every = set()
    for name in stages.names():
        stage = stages.get(name)
        source = inspect.getsource(inspect.getmodule(type(stage)))
        names = set(re.findall(r'"([a-z_]+/[a-z_]+)"', source))
        text = progress.explain_terms(names, stage.term_meanings)
        assert "see the stage's step" not in text and all(term in text for term in names), (name, text)
        every |= names
    assert {"denet/content", "d_lr/loss", "tnet/rec", "cycle/hr", "d_ds/loss"} <= every
    text = progress.explain_terms({"denet/content"}, stages.get("degradation").term_meanings)
    assert re.search(r"denet/content: mean \|DeNet\(HR\) - bicubic\(HR\)\|", text)


def test_the_eta_keeps_steady_when_one_interval_is_slow(clock):
    shown = progress.Progress("degradation", total_steps=1000, steps_per_epoch=100, batch_size=16)
    shown.start(0)
    etas = []
    for k in range(1, 11):
        clock.now += 10 * (0.5 if k % 2 else 5.0)   # every other interval ten times slower (a checkpoint)
        line, _ = shown.line(10 * k, {})
        etas.append(float(re.search(r"ETA (\d+)m", line).group(1)))
    assert max(etas[1:]) / min(etas[1:]) < 2, etas
