"""Config values that cannot run are refused before any work, one line each naming the field."""
import pytest

from configs import smoke
from fsr_jax import config_checks


def problems_of(**fields):
    config = smoke.get_config()
    for dotted, value in fields.items():
        section, *path, key = dotted.split("__")
        node = config[section]
        for part in path:
            node = node[part]
        node[key] = value
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.validate(config, "/nonexistent/workdir", 1)
    return str(err.value).splitlines()[1:]


@pytest.mark.parametrize("fields, line", [
    (dict(model__sr__features=0), "model.sr.features must be positive, got 0"),
    (dict(model__downsampler__blocks=-1), "model.downsampler.blocks must be positive, got -1"),
    (dict(optimizer__learning_rate=float("nan")), "optimizer.learning_rate must be a finite number, got nan"),
    (dict(teacher_student__cycle_weight=float("inf")), "teacher_student.cycle_weight must be a finite number, got inf"),
    (dict(data__on_bad_image="ignore"), "data.on_bad_image must be one of 'error', 'skip', got 'ignore'"),
])
def test_each_bad_value_is_one_line_naming_the_field(fields, line):
    assert problems_of(**fields) == [f"  - {line}"]


def test_every_problem_is_listed_at_once():
    lines = problems_of(model__sr__features=0, optimizer__learning_rate=float("nan"), data__on_wrong_size="x")
    assert len(lines) == 3


@pytest.mark.parametrize("stages, line", [
    (("degradation", "upscaling"),
     "stages: unknown ['upscaling']; the stages are ('degradation', 'teacher_student')"),
    (("teacher_student", "degradation"),
     "stages: 'teacher_student' comes after ['degradation'], got ('teacher_student', 'degradation')"),
    (("degradation", "degradation"), "stages must not repeat a stage, got ('degradation', 'degradation')"),
])
def test_stages_are_known_in_order_and_once(stages, line):
    config = smoke.get_config()
    config.stages = stages
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.validate(config, "/nonexistent/workdir", 1)
    assert f"  - {line}" in str(err.value).splitlines()


def test_a_cycle_teacher_with_a_cycled_student_is_refused():
    # Both would train DSNet in the same step; the teacher's update would be lost.
    (line,) = problems_of(teacher_student__teacher="cycle", teacher_student__student=True, teacher_student__cycle=True)
    assert line.startswith("  - teacher_student.teacher='cycle' with teacher_student.student=True and teacher_student.cycle=True")
    for fields in (dict(teacher_student__student=False), dict(teacher_student__cycle=False)):
        config = smoke.get_config()
        config.teacher_student.teacher = "cycle"
        config.teacher_student.update({k.split("__")[1]: v for k, v in fields.items()})
        config_checks.validate(config, "/nonexistent/workdir", 1)


def test_stage_2_refuses_a_denet_trained_with_another_downsampler_setting(tmp_path):
    """DeNet is restored by its parameters alone; a bicubic skip in stage 1 but not in stage 2 (or
    back) would silently run another function."""
    stage1 = tmp_path / "stage1_run" / "degradation"
    (stage1 / "checkpoints").mkdir(parents=True)
    trained = smoke.get_config()
    trained.model.downsampler.bicubic_skip = True
    (stage1 / "config.json").write_text(trained.to_json())
    config = smoke.get_config()
    config.stages = ("teacher_student",)
    config.teacher_student.denet_checkpoint = str(stage1.parent)
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.validate(config, tmp_path / "new", 1)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 2  # no checkpoint in the folder, and the differing field
    assert lines[1] == (f"  - model.downsampler.bicubic_skip is False, but the stage-1 run that trained DeNet "
                        f"({stage1 / 'config.json'}) has True: set --config.model.downsampler.bicubic_skip=True")
    config.model.downsampler.bicubic_skip = True
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.validate(config, tmp_path / "new", 1)
    assert len(str(err.value).splitlines()[1:]) == 1
