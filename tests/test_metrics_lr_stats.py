"""LR face statistics against OpenCV, hand computations and faces of known noise."""
import cv2
import numpy as np
import pytest

from fsr_jax.metrics import lr_stats


def random_faces(n=6, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_sharpness_is_opencvs_laplacian_variance():
    faces = random_faces()
    grey = faces.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = [cv2.Laplacian(g, cv2.CV_64F, ksize=1).var() for g in grey]
    np.testing.assert_allclose(lr_stats.laplacian_variance(faces), expected, rtol=1e-10)


def test_noise_estimate_recovers_the_sigma_of_added_noise_on_a_smooth_face():
    rows, cols = np.mgrid[0:64, 0:64]
    smooth = 100 + 0.8 * rows + 0.3 * cols + 20 * np.sin(cols / 9.0)  # curved, but slowly
    rng = np.random.default_rng(1)
    for sigma in (2.0, 5.0, 10.0):
        noisy = smooth[None, ..., None] + rng.normal(0.0, sigma, (20, 64, 64, 1))
        estimate = lr_stats.noise_sigma(np.repeat(noisy, 3, axis=-1)).mean()
        assert estimate == pytest.approx(sigma, rel=0.08)
    assert lr_stats.noise_sigma(np.repeat(smooth[None, ..., None], 3, axis=-1))[0] < 0.3


def test_noise_estimate_is_immerkaers_formula_by_hand():
    faces = random_faces(2, 8)
    grey = faces.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    expected = [np.sqrt(np.pi / 2) / (6 * 6 * 6) * sum(abs((g[i:i + 3, j:j + 3] * mask).sum())
                                                       for i in range(6) for j in range(6)) for g in grey]
    np.testing.assert_allclose(lr_stats.noise_sigma(faces), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="3x3"):
        lr_stats.noise_sigma(random_faces(1, 2))


def test_set_statistics_by_hand_and_the_share_outside_the_range():
    faces = np.zeros((2, 4, 4, 3))
    faces[0, ..., 0] = 300.0          # a quarter of the values over 255
    faces[1, 0, 0, :] = -20.0         # 3 of 96 values under 0
    stats = lr_stats.set_statistics(faces)
    assert stats["n"] == 2
    assert stats["outside_share"] == pytest.approx((16 + 3) / 96)
    # Means and stds of the clipped values: red is 255 on half the pixels, 0 elsewhere.
    assert stats["mean_rgb"] == pytest.approx([127.5, 0.0, 0.0])
    assert stats["std_rgb"] == pytest.approx([127.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="N > 0"):
        lr_stats.set_statistics(np.zeros((0, 4, 4, 3)))


def test_realism_gap_is_zero_for_the_same_set_and_grows_with_each_flaw():
    real = np.random.default_rng(2).integers(40, 200, (20, 16, 16, 3))
    base = lr_stats.set_statistics(real)
    assert lr_stats.realism_gap(base, base) == 0.0
    cast = lr_stats.set_statistics(np.clip(real.astype(float) + [30, 0, 0], 0, 255))
    assert lr_stats.realism_gap(cast, base) > 0.05
    assert lr_stats.flaws(cast, base, base) == ["colour shift"]


def test_flaws_name_speckle_and_blur_against_the_baseline(load_faces):
    """On real faces: bicubic LR is sharper and noisier than real LR (the known gap), so a model
    that adds speckle to bicubic is flagged, and one that blurs it towards real LR is not."""
    bicubic, real = load_faces("test/celeba/LR", 64), load_faces("test/widerface/LR", 256)
    stats = {name: lr_stats.set_statistics(x) for name, x in (("bicubic", bicubic), ("real", real))}
    assert stats["bicubic"]["laplacian_variance"] > 3 * stats["real"]["laplacian_variance"]
    assert stats["bicubic"]["noise_sigma"] > 2 * stats["real"]["noise_sigma"]
    speckled = bicubic + np.random.default_rng(3).normal(0, 12, bicubic.shape)
    found = lr_stats.flaws(lr_stats.set_statistics(speckled), stats["bicubic"], stats["real"])
    assert "speckle" in found and "oversharpening" in found
    blurred = np.stack([cv2.GaussianBlur(x, (3, 3), 0.8) for x in bicubic])
    blurred_stats = lr_stats.set_statistics(blurred)
    assert lr_stats.flaws(blurred_stats, stats["bicubic"], stats["real"]) == []
    assert lr_stats.realism_gap(blurred_stats, stats["real"]) < lr_stats.realism_gap(stats["bicubic"], stats["real"])
