"""fsr_jax.stages: stages found by name, and a stage from outside the package trained by the
unchanged loop (checkpoints, metrics, resume)."""
import dataclasses
import json

import jax
import ml_collections
import numpy as np
import pytest

from configs import smoke
from fsr_jax import checkpointing, grids, losses, stages, train
from fsr_jax.steps import generator_update, make_optimizer
from fsr_jax.models import layers
from helpers import STAGE1, STAGE2

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow


@dataclasses.dataclass(frozen=True)
class ToySettings:
    rec_weight: float


class BicubicTeacher(stages.Stage):
    """TNet alone on bicubic pairs, reconstruction loss only: a stage the package does not have."""

    name = "bicubic_teacher"

    def settings(self, section):
        return ToySettings(float(section.rec_weight))

    def networks(self, spec):
        return {"tnet": (spec.modules.sr, "lr")}

    def step(self, spec, tx):
        def step(state, batch):
            hr = batch["hr"]
            lr = layers.bicubic_downsample(hr, spec.scale)

            def loss(params):
                rec = losses.reconstruction(hr, spec.modules.sr.apply({"params": params}, lr))
                return spec.settings.rec_weight * rec, {"tnet/rec": rec}

            tnet, metrics = generator_update(state.nets["tnet"], loss, tx)
            return state.replace(step=state.step + 1, nets={"tnet": tnet}), metrics

        return step

    def preview(self, spec):
        def preview(state, batch):
            hr = batch["hr"][:spec.summary_images]
            return {"tnet": [grids.to_panel(hr, spec.hr_size, "rgb")]}

        return preview


@pytest.fixture
def toy_stage():
    stage = stages.register(BicubicTeacher())
    yield stage
    stages.unregister(stage.name)


def test_the_package_stages_are_found_by_name():
    assert stages.names() == (STAGE1, STAGE2)
    config = smoke.get_config()
    assert all(name in config for name in stages.names())   # each stage's section is its name
    with pytest.raises(ValueError, match=r"unknown stage 'upscale'; the stages are \('degradation', 'teacher_student'\)"):
        stages.get("upscale")


def test_a_taken_name_is_refused(toy_stage):
    assert stages.names() == ("bicubic_teacher", STAGE1, STAGE2)
    with pytest.raises(ValueError, match="'bicubic_teacher' exists already"):
        stages.register(BicubicTeacher())

    class Clash(BicubicTeacher):
        name = STAGE2

    with pytest.raises(ValueError, match="'teacher_student' exists already"):
        stages.register(Clash())


def test_a_registered_stage_trains_checkpoints_and_resumes_in_the_unchanged_loop(tmp_path, smoke_tfds_dir, toy_stage):
    config = smoke.get_config()
    config.data.tfds_dir = smoke_tfds_dir
    config.stages = (toy_stage.name,)
    config.bicubic_teacher = ml_collections.ConfigDict(dict(batch_size=4, epochs=1, max_steps=2, rec_weight=1.0))
    config.train.update(log_every=1, checkpoint_every=2, images_every=2)
    train.train_and_evaluate(config, str(tmp_path))
    config.bicubic_teacher.max_steps = 4
    train.train_and_evaluate(config, str(tmp_path))

    folder = tmp_path / toy_stage.name
    assert checkpointing.step_folders(folder / "checkpoints") == [4, 2]
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert all(np.isfinite(line["tnet/rec"]) for line in lines)
    assert json.loads((folder / "config.json").read_text())["bicubic_teacher"]["max_steps"] == 4
    assert sorted(p.name.split("_")[-1] for p in (folder / "images").glob("*.png")) == ["00000002.png", "00000004.png"]

    spec = stages.step_spec(config, toy_stage, steps_per_epoch=1)
    initial = stages.init_state(spec, make_optimizer(spec.optimizer, 1), config.seed).nets["tnet"].params
    trained, step = checkpointing.restore_params(folder / "checkpoints", ("tnet",))
    assert step == 4
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree_util.tree_leaves(initial), jax.tree_util.tree_leaves(trained["tnet"])))


def test_a_registered_stage_is_checked_like_the_package_ones(tmp_path, toy_stage):
    from fsr_jax import config_checks

    config = smoke.get_config()
    config.stages = (toy_stage.name,)
    config.bicubic_teacher = ml_collections.ConfigDict(dict(batch_size=3, epochs=1, max_steps=-1, rec_weight=-1.0))
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.validate(config, tmp_path, 2)
    assert str(err.value).splitlines()[1:] == [
        "  - bicubic_teacher.batch_size=3 must be a positive multiple of the 2 devices the batch is split over",
        "  - bicubic_teacher.max_steps must be >= 0 (0: run the configured epochs), got -1",
        "  - bicubic_teacher: loss weights must be >= 0: rec_weight=-1.0",
    ]
