"""fsr_jax.data.degrade: each degradation step, their composition, the drawn parameters."""
import numpy as np
import pytest
import scipy.ndimage

from fsr_jax.data import degrade, images, synthetic


def test_gaussian_blur_matches_scipy():
    x = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    sigma = 1.3
    ours = degrade.gaussian_blur(x, sigma)
    truncate = np.ceil(3 * sigma) / sigma
    ref = scipy.ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="mirror", truncate=truncate)
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert ours.std() < 0.5 * x.std()


def test_decimate_picks_every_factor_th_pixel():
    x = np.arange(64 * 64 * 3).reshape(64, 64, 3)
    out = degrade.decimate(x, 4, (1, 3))
    assert out.shape == (16, 16, 3)
    assert out[2, 5, 1] == x[1 + 8, 3 + 20, 1]


def test_colour_shift_moves_channels_by_the_configured_amount():
    x = np.full((16, 16, 3), 0.5, np.float32)
    out = degrade.colour_shift(x, (1.1, 1.0, 0.9), (0.02, -0.03, 0.0))
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [0.57, 0.47, 0.45], atol=1e-5)


@pytest.mark.parametrize("sigma", [2.0, 8.0])
def test_noise_step_adds_the_configured_noise_level(sigma):
    x = np.full((256, 256, 3), 0.5, np.float32)
    out = degrade.add_noise(x, sigma, np.random.default_rng(1))
    assert abs((out - x).std() * 255 - sigma) < 0.03 * sigma
    assert abs((out - x).mean() * 255) < 0.05


def test_jpeg_step_loses_more_at_lower_quality():
    face = images.resize_bicubic(synthetic.hr_face(0, 1), 16)
    errors = [np.abs(degrade.jpeg(face, q).astype(float) - face).mean() for q in (95, 60, 20)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_degrade_composes_the_steps():
    hr = synthetic.hr_face(0, 2)
    params = degrade.DegradationParams(blur_sigma=1.5, phase=(2, 1), gains=(1.05, 1.0, 0.95),
                                         offsets=(0.01, 0.0, -0.01), noise_sigma=5.0,
                                         jpeg_quality=70)
    x = degrade.gaussian_blur(hr / 255.0, 1.5)
    x = degrade.decimate(x, 4, (2, 1))
    x = degrade.colour_shift(x, params.gains, params.offsets)
    x = degrade.add_noise(x, 5.0, np.random.default_rng(9))
    expected = degrade.jpeg(degrade.to_uint8(x), 70)
    np.testing.assert_array_equal(
        degrade.degrade(hr, params, 4, np.random.default_rng(9)), expected)


def test_sampled_parameters_lie_in_the_configured_ranges():
    cfg = degrade.DegradationConfig()
    draws = [degrade.sample_degradation(np.random.default_rng(i), cfg, 4) for i in range(50)]
    assert draws[0] == degrade.sample_degradation(np.random.default_rng(0), cfg, 4)
    for p in draws:
        assert cfg.blur_sigma[0] <= p.blur_sigma <= cfg.blur_sigma[1]
        assert cfg.noise_sigma[0] <= p.noise_sigma <= cfg.noise_sigma[1]
        assert cfg.jpeg_quality[0] <= p.jpeg_quality <= cfg.jpeg_quality[1]
        assert all(0 <= q < 4 for q in p.phase)
        assert all(abs(g - 1) <= cfg.colour_gain for g in p.gains)
        assert all(abs(o) <= cfg.colour_offset for o in p.offsets)
