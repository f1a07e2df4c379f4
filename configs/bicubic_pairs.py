"""Table 3 "Ours-TNet-bicubic" / "Ours-SNet-bicubic": the teacher learns on bicubic pairs.

Stage 2 with bicubic-downscaled HR in place of DeNet(HR), so no stage 1.
"""
from configs import teacher_student


def get_config():
    config = teacher_student.get_config()
    config.stages = ("teacher_student",)
    config.teacher_student.teacher = "bicubic"
    return config
