"""fsr_jax.data.synthetic: determinism, unpaired sets, each degradation step, the domain gap."""
import glob

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image
from scipy import stats

from fsr_jax.data import images, synthetic

N = 120  # faces per set in the statistics tests


@pytest.fixture(scope="module")
def sets():
    hr = np.stack([synthetic.hr_face(0, i) for i in range(N)])
    lr = np.stack([synthetic.lr_face(0, i) for i in range(N)])
    return hr, lr


def test_deterministic_by_seed_and_varied():
    a, b = synthetic.hr_face(3, 7), synthetic.hr_face(3, 7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(synthetic.lr_face(3, 7), synthetic.lr_face(3, 7))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert synthetic.lr_face(3, 7).shape == (16, 16, 3)
    assert not np.array_equal(a, synthetic.hr_face(4, 7))
    assert not np.array_equal(a, synthetic.hr_face(3, 8))


def test_hr_and_lr_sets_are_unpaired(sets):
    hr, _ = sets
    # The LR faces come from other seeds: no clean LR source face is any HR face.
    clean_lr = np.stack([synthetic.draw_face(synthetic.face_rng(0, synthetic.STREAM_LR, i))
                         for i in range(N)]).reshape(N, -1).astype(np.float64)
    flat_hr = hr.reshape(N, -1).astype(np.float64)
    sq = (clean_lr ** 2).sum(1)[:, None] + (flat_hr ** 2).sum(1)[None] - 2 * clean_lr @ flat_hr.T
    assert sq.min() / flat_hr.shape[1] > 100.0  # mean squared difference; identical faces: 0
    first = [synthetic.face_rng(0, s, 0).random() for s in range(4)]
    assert len(set(first)) == 4


def test_gaussian_blur_matches_scipy():
    x = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    sigma = 1.3
    ours = synthetic.gaussian_blur(x, sigma)
    truncate = np.ceil(3 * sigma) / sigma
    ref = scipy.ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="mirror", truncate=truncate)
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert ours.std() < 0.5 * x.std()


def test_decimate_picks_every_factor_th_pixel():
    x = np.arange(64 * 64 * 3).reshape(64, 64, 3)
    out = synthetic.decimate(x, 4, (1, 3))
    assert out.shape == (16, 16, 3)
    assert out[2, 5, 1] == x[1 + 8, 3 + 20, 1]


def test_colour_shift_moves_channels_by_the_configured_amount():
    x = np.full((16, 16, 3), 0.5, np.float32)
    out = synthetic.colour_shift(x, (1.1, 1.0, 0.9), (0.02, -0.03, 0.0))
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [0.57, 0.47, 0.45], atol=1e-5)


@pytest.mark.parametrize("sigma", [2.0, 8.0])
def test_noise_step_adds_the_configured_noise_level(sigma):
    x = np.full((256, 256, 3), 0.5, np.float32)
    out = synthetic.add_noise(x, sigma, np.random.default_rng(1))
    assert abs((out - x).std() * 255 - sigma) < 0.03 * sigma
    assert abs((out - x).mean() * 255) < 0.05


def test_jpeg_step_loses_more_at_lower_quality():
    face = images.resize_bicubic(synthetic.hr_face(0, 1), 16)
    errors = [np.abs(synthetic.jpeg(face, q).astype(float) - face).mean() for q in (95, 60, 20)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_degrade_composes_the_steps():
    hr = synthetic.hr_face(0, 2)
    params = synthetic.DegradationParams(blur_sigma=1.5, phase=(2, 1), gains=(1.05, 1.0, 0.95),
                                         offsets=(0.01, 0.0, -0.01), noise_sigma=5.0,
                                         jpeg_quality=70)
    x = synthetic.gaussian_blur(hr / 255.0, 1.5)
    x = synthetic.decimate(x, 4, (2, 1))
    x = synthetic.colour_shift(x, params.gains, params.offsets)
    x = synthetic.add_noise(x, 5.0, np.random.default_rng(9))
    expected = synthetic.jpeg(synthetic.to_uint8(x), 70)
    np.testing.assert_array_equal(
        synthetic.degrade(hr, params, 4, np.random.default_rng(9)), expected)


def _hf_ratio(x):
    """Share of fine detail: mean |Laplacian| / mean |gradient| of grey, per image."""
    g = x.astype(np.float64).mean(-1)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    grad = np.abs(np.diff(g, axis=1)).mean((1, 2)) + np.abs(np.diff(g, axis=2)).mean((1, 2))
    return np.abs(lap).mean((1, 2)) / (grad / 2)


def _chroma_detail(x):
    """Mean |Laplacian| of the chroma (pixel minus its grey), per image."""
    c = x.astype(np.float64) - x.astype(np.float64).mean(-1, keepdims=True)
    lap = 4 * c[:, 1:-1, 1:-1] - c[:, :-2, 1:-1] - c[:, 2:, 1:-1] - c[:, 1:-1, :-2] - c[:, 1:-1, 2:]
    return np.abs(lap).mean((1, 2, 3))


def test_lr_statistics_differ_from_bicubic_like_real_lr_does(sets, faces_dir):
    hr, lr = sets
    bicubic = np.stack([images.resize_bicubic(h, 16) for h in hr])
    real_lr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in
                        sorted(glob.glob(str(faces_dir / "train" / "LOW" / "*.png")))[:N]])
    real_hr = [np.asarray(Image.open(f).convert("RGB")) for f in
               sorted(glob.glob(str(faces_dir / "train" / "HIGH" / "*.png")))[:N]]
    real_bicubic = np.stack([images.resize_bicubic(h, 16) for h in real_hr])
    for statistic in (_hf_ratio, _chroma_detail):
        ours, bic = statistic(lr), statistic(bicubic)
        assert stats.ks_2samp(ours, bic).pvalue < 1e-6, statistic.__name__
        # Same direction as the real gap: real LR has less fine and chroma detail.
        assert ours.mean() < bic.mean(), statistic.__name__
        assert statistic(real_lr).mean() < statistic(real_bicubic).mean(), statistic.__name__


def test_contact_sheet_command_writes_both_sets(tmp_path):
    path = tmp_path / "sheet.png"
    assert synthetic.main(["--output", str(path)]) == 0
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (6 * 64 + 20, 2 * 8 * 64 + 16, 3)
    np.testing.assert_array_equal(sheet[20:84, :64], synthetic.hr_face(0, 0))
    lr_tile = sheet[20:84, 8 * 64 + 16: 9 * 64 + 16]
    np.testing.assert_array_equal(lr_tile[::4, ::4], synthetic.lr_face(0, 0))
