"""Configs and saved runs of earlier versions read in today's names (fsr_jax.config_upgrade)."""
import ml_collections

from configs import smoke
from fsr_jax import config_upgrade


def test_old_stage_sections_and_model_fields_come_back_in_todays_names():
    today = smoke.get_config().to_dict()
    old = dict(today)
    old["stage1"], old["stage2"] = old.pop("degradation"), old.pop("teacher_student")
    old["model"] = {**today["model"], "sr": {k: v for k, v in today["model"]["sr"].items() if k != "iterations"}}
    old["model"]["sr"]["steps"] = today["model"]["sr"]["iterations"]
    assert config_upgrade.old_names(old) == ["stage1", "stage2"]
    upgraded = config_upgrade.upgrade(old)
    assert isinstance(upgraded, ml_collections.ConfigDict) and not config_upgrade.old_names(upgraded)
    assert upgraded.to_dict() == config_upgrade.upgrade(today).to_dict()
    assert upgraded.degradation.max_steps == today["degradation"]["max_steps"]
    assert upgraded.model.sr.iterations == today["model"]["sr"]["iterations"] and "steps" not in upgraded.model.sr
    assert "stage1" in old and old["model"]["sr"]["steps"]          # the input is left as it was


def test_a_config_with_an_old_and_a_new_name_keeps_the_new_sections_fields():
    config = {"stage2": {"batch_size": 4, "teacher": "denet"}, "teacher_student": {"batch_size": 8}}
    assert config_upgrade.upgrade(config).to_dict() == {"teacher_student": {"batch_size": 8, "teacher": "denet"}}


def test_todays_config_is_unchanged():
    config = smoke.get_config()
    assert config_upgrade.old_names(config) == []
    assert config_upgrade.upgrade(config).to_dict() == config_upgrade.upgrade(config.to_dict()).to_dict()
    assert config_upgrade.upgrade(config).degradation == config.degradation
