"""fsr_jax.data.config: defaults, typed placeholders, the tfds_dir environment override."""

import pytest

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


@pytest.mark.parametrize("name", ["../outside", "a/b", "/abs", "..", "two words", "dot.ted",
                                  "tab\there"])
def test_test_set_names_with_path_characters_are_refused(name):
    with pytest.raises(ValueError) as e:
        config.parse_test_sets([f"{name}=/data/test"])
    assert str(e.value) == (f"test set name {name!r}: use only letters, digits, '_' and '-' "
                            "(it names a folder)")


def test_test_set_names_accepted():
    assert config.parse_test_sets(["celeba=/a", "wider_face-2=/b"]) == {"celeba": "/a",
                                                                        "wider_face-2": "/b"}


def test_problems_name_the_allowed_values():
    c = config.default_config()
    assert config.problems(c) == []
    assert c.max_image_pixels == 8192 * 8192
    c.on_bad_image, c.on_wrong_size, c.max_image_pixels = "warn", "pad", 0
    assert config.problems(c) == [
        "data.on_bad_image must be one of 'error', 'skip', got 'warn'",
        "data.on_wrong_size must be one of 'resize', 'error', got 'pad'",
        "data.max_image_pixels must be positive, got 0"]
