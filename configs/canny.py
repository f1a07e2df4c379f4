"""Table 3 "+Canny": the Canny prior at iteration 2, none at iteration 3."""
from configs import teacher_student


def get_config():
    config = teacher_student.get_config()
    config.model.sr.edges = ("canny",)
    return config
