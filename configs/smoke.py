"""Every network and the data shrunk for CPU tests and a first look (a minute on a laptop)."""
import ml_collections

from configs import teacher_student


def get_config() -> ml_collections.ConfigDict:
    config = teacher_student.get_config()
    config.model.sr.update(features=8, groups=1)
    config.model.downsampler.update(features=8, blocks=1)
    config.model.discriminator.width = 0.125
    config.data.update(synthetic_hr=64, synthetic_lr=64, synthetic_test=16)
    config.degradation.update(batch_size=8, max_steps=8)
    config.teacher_student.update(batch_size=4, max_steps=8)
    config.train.update(log_every=2, images_every=4, checkpoint_every=4, summary_images=2)
    return config
