"""Table 3 "Ours-w/o-cycle": no DSNet, no cycle loss."""
from configs import teacher_student


def get_config():
    config = teacher_student.get_config()
    config.teacher_student.cycle = False
    return config
