"""PSNR and SSIM equal scikit-image's (RGB, data range 255, Gaussian SSIM) on real faces."""
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fsr_jax.metrics import psnr, ssim


@pytest.fixture(scope="module")
def pairs(load_faces):
    """16 real HR faces and their real bicubic LR brought back to 64x64 (uint8)."""
    return load_faces("test/celeba/HR", 16), load_faces("test/celeba/LR", 16, size=64)


def _unit(images):
    return images.astype(np.float32) / 255.0


def test_psnr_equals_scikit_image(pairs):
    hr, sr = pairs
    ours = np.asarray(psnr(_unit(hr), _unit(sr)))
    ref = np.array([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(hr, sr)])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert np.isinf(np.asarray(psnr(_unit(hr[:2]), _unit(hr[:2])))).all()


def test_ssim_equals_scikit_image(pairs):
    hr, sr = pairs
    ours = np.asarray(ssim(_unit(hr), _unit(sr)))
    ref = np.array([
        structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255, channel_axis=-1)
        for a, b in zip(hr, sr)])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ssim(_unit(hr[:2]), _unit(hr[:2]))), 1.0, atol=1e-6)
