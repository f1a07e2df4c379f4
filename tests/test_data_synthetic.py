"""fsr_jax.data.synthetic: determinism, unpaired sets, the domain gap of its LR faces, the contact sheet."""
import glob

import numpy as np
import pytest
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
