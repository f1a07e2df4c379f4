"""A stage run's reports (train.Reports): each step's terms fetched and NaN-checked, their means
logged as one metrics.jsonl line per log step, by hand."""
import json
import types

import numpy as np
import pytest

from fsr_jax import train


@pytest.fixture
def run(tmp_path):
    return types.SimpleNamespace(
        dir=tmp_path / "stage", primary=True, name="toy", total_steps=8, steps_per_epoch=4,
        cfg=types.SimpleNamespace(batch_size=2), lr_schedule=lambda step: 0.5 ** step,
        stage=types.SimpleNamespace(term_meanings={}))


def test_the_means_of_every_step_since_the_last_line_are_logged(run):
    reports = train.Reports(run, resume_step=0)
    reports.add(1, {"g/rec": np.array([1.0, 2.0]), "d/loss": np.array([0.5, 0.7])})   # steps 1-2
    reports.add(3, {"g/rec": np.array([3.0, 6.0]), "d/loss": np.array([0.1, 0.1])})   # steps 3-4
    reports.log(4, first_call=False)
    reports.add(5, {"g/rec": np.array([10.0]), "d/loss": np.array([0.0])})
    reports.log(5, first_call=False)
    reports.close()
    lines = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"step": 4, "g/rec": 3.0, "d/loss": pytest.approx(0.35), "learning_rate": 0.5 ** 3}
    assert lines[1] == {"step": 5, "g/rec": 10.0, "d/loss": 0.0, "learning_rate": 0.5 ** 4}


def test_a_non_finite_term_names_itself_and_its_step(run):
    reports = train.Reports(run, resume_step=0)
    with pytest.raises(train.NonFiniteLossError, match=r"loss term 'g/rec' is nan at step 6"):
        reports.add(5, {"g/rec": np.array([1.0, np.nan]), "d/loss": np.array([0.5, 0.5])})
    reports.close()
