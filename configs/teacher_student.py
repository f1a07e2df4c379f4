"""The paper's system at the paper's sizes (DESIGN.md).

Today it holds the networks (`model`); training and data sections land with the main job.
Use with `python -m fsr_jax.models --summary --config configs/teacher_student.py`.
"""
import ml_collections

from fsr_jax import models


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = models.default_config()
    return config
