"""Stage 1 alone: DeNet + D_LR into W/degradation."""
import ml_collections

from configs import teacher_student


def get_config() -> ml_collections.ConfigDict:
    config = teacher_student.get_config()
    config.stages = ("degradation",)
    return config
