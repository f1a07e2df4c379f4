"""FLOPs of a stage's step and the time predictions made from them."""
import pytest

from configs import smoke
from fsr_jax import cost, stages
from helpers import STAGE1, STAGE2

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config():
    return smoke.get_config()


def test_step_flops_grow_with_the_batch_and_stage_two_costs_more(config):
    one = cost.step_flops(stages.get(STAGE1), config, 4)
    assert one and cost.step_flops(stages.get(STAGE1), config, 8) == pytest.approx(2 * one, rel=0.02)
    assert cost.step_flops(stages.get(STAGE2), config, 4) > 2 * one   # two SR nets x 3 iterations beside DeNet's net


def test_predicted_seconds_scale_other_stages_by_their_flops():
    flops = {STAGE1: 100.0, STAGE2: 400.0}
    # measured on stage 1: 0.5 s/step; stage 2 costs 4x per step: 1,000 x 2 s + 10 x 0.5 s
    assert cost.predicted_seconds({STAGE2: 1000, STAGE1: 10}, flops, STAGE1, 0.5) == pytest.approx(2005.0)

