"""Canny and DoG against OpenCV, eagerly and under jit, vmap and a 4-device shard_map."""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from fsr_jax import edges
from fsr_jax.mesh import DATA_AXIS, batch_sharding, data_mesh
from helpers import read_faces


def opencv_canny(images: np.ndarray, low=50, high=150) -> np.ndarray:
    """Reference: cv2.Canny of RGB2GRAY of uint8(round(255 * clip(x))), as {0, 1} (B, H, W, 1)."""
    quantised = np.round(np.float32(255.0) * np.clip(images, 0, 1)).astype(np.uint8)
    maps = [cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), low, high, apertureSize=3,
                      L2gradient=False) for im in quantised]
    return (np.stack(maps)[..., None] > 0).astype(np.float32)


def opencv_dog(images: np.ndarray, sigmas=(1.0, 1.6)) -> np.ndarray:
    """Reference: GaussianBlur(grey, s1) - GaussianBlur(grey, s2) on float32 grey, REFLECT_101."""
    out = []
    for im in np.clip(images, 0, 1).astype(np.float32):
        grey = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
        blur = [cv2.GaussianBlur(grey, (0, 0), s, borderType=cv2.BORDER_REFLECT_101) for s in sigmas]
        out.append(blur[0] - blur[1])
    return np.stack(out)[..., None]


@pytest.fixture(scope="module")
def faces(faces_dir):
    """8 real HR faces, perturbed off the 1/255 grid so the quantisation is exercised."""
    clean = read_faces(faces_dir / "test" / "celeba" / "HR", 8)
    noise = np.random.default_rng(0).normal(0, 0.01, clean.shape).astype(np.float32)
    return clean + noise


@pytest.fixture
def callback_batches(monkeypatch):
    """Records the leading shape of every array the Canny host callback receives."""
    seen = []
    original = edges._canny_host

    def spy(images, low, high):
        seen.append(np.shape(images)[:-3])
        return original(images, low, high)

    monkeypatch.setattr(edges, "_canny_host", spy)
    return seen


def test_canny_equals_opencv_eager_jit_and_vmap(faces):
    reference = opencv_canny(faces)
    assert 0.05 < reference.mean() < 0.5, "faces should have a fair share of edge pixels"
    np.testing.assert_array_equal(np.asarray(edges.canny(faces)), reference)
    np.testing.assert_array_equal(np.asarray(jax.jit(edges.canny)(faces)), reference)
    stacked = jax.vmap(edges.canny)(faces.reshape(2, 4, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(stacked).reshape(reference.shape), reference)


def test_canny_thresholds_are_opencvs(faces):
    np.testing.assert_array_equal(np.asarray(edges.canny(faces, 20, 60)), opencv_canny(faces, 20, 60))
    assert not np.array_equal(opencv_canny(faces, 20, 60), opencv_canny(faces))


def test_canny_under_shard_map_calls_back_per_shard(faces, callback_batches):
    mesh = data_mesh(jax.devices()[:4])
    sharded = jax.shard_map(edges.canny, mesh=mesh, in_specs=PartitionSpec(DATA_AXIS),
                            out_specs=PartitionSpec(DATA_AXIS))
    out = jax.jit(sharded)(jax.device_put(faces, batch_sharding(mesh)))
    np.testing.assert_array_equal(np.asarray(out), opencv_canny(faces))
    assert callback_batches == [(2,)] * 4, f"each of 4 shards must see 2 of 8 images: {callback_batches}"


def test_canny_under_a_mesh_splits_the_batch_itself(faces, callback_batches):
    mesh = data_mesh(jax.devices()[:4])
    with jax.set_mesh(mesh):
        out = jax.jit(lambda x: edges.canny(x * 1.0))(jax.device_put(faces, batch_sharding(mesh)))
    np.testing.assert_array_equal(np.asarray(out), opencv_canny(faces))
    assert callback_batches == [(2,)] * 4, f"each of 4 shards must see 2 of 8 images: {callback_batches}"


def test_dog_equals_opencv(faces):
    reference = opencv_dog(faces)
    ours = np.asarray(jax.jit(edges.dog)(faces))
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)
    assert 0.05 < np.abs(reference).max() < 0.3
    np.testing.assert_allclose(np.asarray(edges.dog(faces, (0.8, 2.0))), opencv_dog(faces, (0.8, 2.0)),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [1.0, 1.6, 0.7, 2.5])
def test_gaussian_kernel_is_opencvs(sigma):
    size = edges.gaussian_kernel(sigma).shape[0]
    assert size == {1.0: 9, 1.6: 15, 0.7: 7, 2.5: 21}[sigma]
    np.testing.assert_allclose(edges.gaussian_kernel(sigma),
                               cv2.getGaussianKernel(size, sigma, cv2.CV_64F)[:, 0], atol=1e-12)


def test_edges_stop_gradients(faces):
    x = jnp.asarray(faces[:2])
    for op in (edges.canny, edges.dog):
        grad = jax.grad(lambda im: jnp.sum(op(im) * im[..., :1]))(x)
        assert np.all(np.asarray(grad)[..., 1:] == 0), op.__name__

