"""Configs of earlier versions in today's field names: the one place old names are read.

A config file written for an earlier version, and the config.json every run saves, may use
names that have changed since. `upgrade` returns a copy in today's names, so resuming a run,
comparing its config with the current one, reading its model for inference or evaluating it work
the same for old and new runs:

- the stage sections took their stage's name: `stage1` -> `degradation`, `stage2` ->
  `teacher_student` (a config holding both an old and a new name keeps the new one's fields);
- the `model` section: `models.upgrade_config` (`sr.steps` -> `sr.iterations`, fields added since).
"""
from __future__ import annotations

import copy

import ml_collections

from fsr_jax import models

#: Old section name -> today's.
RENAMED_SECTIONS = {"stage1": "degradation", "stage2": "teacher_student"}


def old_names(config) -> list[str]:
    """The old section names a config (ConfigDict or dict) uses, in RENAMED_SECTIONS order."""
    return [old for old in RENAMED_SECTIONS if old in config]


def upgrade(config) -> ml_collections.ConfigDict:
    """A copy of a whole config (ConfigDict or dict, e.g. a saved config.json) in today's names.

    Raises:
      ValueError: from `models.upgrade_config`, for a model this version cannot build.
    """
    plain = copy.deepcopy(config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config))
    for old, new in RENAMED_SECTIONS.items():
        if old in plain:
            section = plain.pop(old)
            plain[new] = {**section, **plain.get(new, {})} if isinstance(section, dict) else plain.get(new, section)
    if "model" in plain:
        plain["model"] = models.upgrade_config(plain["model"]).to_dict()
    return ml_collections.ConfigDict(plain)
