"""fsr_jax.data.config: defaults, typed placeholders, the tfds_dir environment override."""

from fsr_jax.data import config


def test_defaults():
    c = config.default_config()
    assert c.hr_dir is None and c.lr_dir is None and dict(c.test_sets) == {}
    assert (c.hr_size, c.lr_size, c.on_bad_image, c.on_wrong_size) == (64, 16, "error", "resize")
    assert c.random_flip and c.synthetic_hr >= 2000 and c.synthetic_lr >= 2000
    c.hr_dir = "/data/HIGH"  # typed placeholders take a str (command-line overrides need this)
    assert c.hr_dir == "/data/HIGH"


def test_tfds_dir_environment_override(monkeypatch):
    monkeypatch.setenv(config.TFDS_DIR_ENV, "/somewhere/tfds")
    assert config.default_config().tfds_dir == "/somewhere/tfds"
    monkeypatch.delenv(config.TFDS_DIR_ENV)
    assert config.default_config().tfds_dir == config.DEFAULT_TFDS_DIR
