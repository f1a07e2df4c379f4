"""Table 3 "baseline": no edge priors in TNet and SNet."""
from configs import teacher_student


def get_config():
    config = teacher_student.get_config()
    config.model.sr.edges = ()
    return config
