"""Table 3 "Ours-cycle": TNet trained by the CycleGAN scheme on unpaired real LR and HR.

Adversarial losses in both domains, cycle losses LR->HR->LR and HR->LR->HR through DSNet, no
DeNet pairs (so no stage 1) and no student; evaluated as TNet.
"""
from configs import teacher_student


def get_config():
    config = teacher_student.get_config()
    config.stages = ("teacher_student",)
    config.teacher_student.teacher = "cycle"
    config.teacher_student.student = False
    return config
