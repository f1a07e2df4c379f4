"""Canny (both implementations) and DoG against OpenCV, eagerly and under jit, vmap, a 4-device
shard_map, grad and lax.scan; the prior registry `edges.PRIORS` with a prior registered here."""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from fsr_jax import edges, models
from fsr_jax.mesh import DATA_AXIS, batch_sharding, data_mesh
from helpers import read_faces

SMALL_SR = dict(features=8, groups=2, iterations=3)


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


def agreement(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(share of equal pixels, share of identical maps) of two (B, H, W, 1) edge-map stacks."""
    equal = ours == reference
    return float(equal.mean()), float(equal.reshape(len(equal), -1).all(axis=1).mean())


@pytest.fixture(scope="module")
def agreement_sets(faces_dir):
    """Image sets the device Canny must agree with cv2.Canny on, each (N, 64, 64, 3) in [0, 1]:
    real HR faces, real LR faces bicubic-upsampled, an untrained FeedbackSR's first and last
    outputs on those LR faces, uniform noise and blurred noise."""
    hr = read_faces(faces_dir / "train" / "HIGH", 64)
    lr = read_faces(faces_dir / "train" / "LOW", 64)
    lr_up = np.stack([cv2.resize(im, (64, 64), interpolation=cv2.INTER_CUBIC) for im in lr])
    net = models.FeedbackSR(**SMALL_SR)
    params = net.init(jax.random.key(0), lr[:1])
    sr = jax.jit(net.apply)(params, lr)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (32, 64, 64, 3)).astype(np.float32)
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in rng.uniform(0, 1, noise.shape).astype(np.float32)])
    return {"hr": hr, "lr_bicubic": lr_up, "untrained_sr_1": np.asarray(sr[0]),
            "untrained_sr_3": np.asarray(sr[-1]), "noise": noise, "blurred_noise": blurred}


@pytest.mark.slow
@pytest.mark.parametrize("thresholds", [(50, 150), (20, 60), (150, 50)])
def test_device_canny_agrees_with_opencv(agreement_sets, thresholds):
    """At least 99.9 % of pixels and 95 % of whole maps equal cv2.Canny's (measured: all)."""
    canny = jax.jit(lambda x: edges.canny_jax(x, *thresholds))
    for name, images in agreement_sets.items():
        reference = opencv_canny(images, *thresholds)
        pixels, maps = agreement(np.asarray(canny(images)), reference)
        assert pixels >= 0.999 and maps >= 0.95, f"{name} {thresholds}: pixels {pixels}, maps {maps}"
        assert 0.001 < reference.mean() < 0.5, f"{name}: the set should have edges to agree on"


def test_device_canny_grey_is_opencvs_fixed_point():
    """Every one of the 2**24 RGB triplets gets OpenCV's uint8 RGB2GRAY value."""
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(4096, 4096, 3)
    np.testing.assert_array_equal(np.asarray(jax.jit(edges.grey_uint8)(rgb)),
                                  cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def test_device_canny_non_maximum_suppression_by_hand():
    """A two-pixel-wide vertical ramp step: equal magnitudes side by side keep the left pixel
    (OpenCV: m > left, m >= right), and only rows with enough magnitude survive."""
    grey = np.zeros((1, 6, 8), np.int32)
    grey[:, :, 4:] = 100                          # step between columns 3 and 4
    dx, dy = edges.sobel(jnp.asarray(grey))
    assert np.asarray(dx)[0, 2].tolist() == [0, 0, 0, 400, 400, 0, 0, 0]
    strong, weak = edges.canny_candidates(dx, dy, 50, 150)
    expected = np.zeros((1, 6, 8), bool)
    expected[:, :, 3] = True
    np.testing.assert_array_equal(np.asarray(strong), expected)
    assert not np.asarray(weak).any()
    image = np.repeat(grey[..., None], 3, -1).astype(np.uint8)[0]
    np.testing.assert_array_equal(cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 50, 150) > 0, expected[0])


def test_device_canny_hysteresis_follows_weak_chains_to_convergence():
    """A long 8-connected chain of weak pixels joined to one strong pixel becomes edges all
    along; an unconnected weak pixel does not."""
    strong = np.zeros((1, 40, 40), bool)
    weak = np.zeros_like(strong)
    strong[0, 0, 0] = True
    for i in range(1, 39):                        # a diagonal chain, 38 steps long
        weak[0, i, i] = True
    weak[0, 0, 30] = True                         # isolated
    grown = np.asarray(edges.hysteresis(jnp.asarray(strong), jnp.asarray(weak)))
    np.testing.assert_array_equal(grown, strong | (weak & (np.eye(40, dtype=bool)[None])))


@pytest.mark.slow
def test_device_canny_runs_under_jit_vmap_shard_map_and_scan_without_callbacks(faces, callback_batches):
    reference = opencv_canny(faces)
    np.testing.assert_array_equal(np.asarray(edges.canny(faces)), reference)
    stacked = jax.vmap(edges.canny)(faces.reshape(2, 4, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(stacked).reshape(reference.shape), reference)
    mesh = data_mesh(jax.devices()[:4])
    sharded = jax.shard_map(edges.canny, mesh=mesh, in_specs=PartitionSpec(DATA_AXIS),
                            out_specs=PartitionSpec(DATA_AXIS))
    out = jax.jit(sharded)(jax.device_put(faces, batch_sharding(mesh)))
    np.testing.assert_array_equal(np.asarray(out), reference)
    scanned = jax.jit(lambda x: jax.lax.scan(lambda c, im: (c, edges.canny(im)), 0, x)[1])(
        faces.reshape(2, 4, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(scanned).reshape(reference.shape), reference)
    assert callback_batches == [], "the device Canny must not call back to the host"


def test_canny_impl_is_checked(faces):
    with pytest.raises(ValueError, match="Canny impl must be one of"):
        edges.canny(faces, impl="cv3")
    with pytest.raises(ValueError, match="canny_impl must be one of"):
        models.FeedbackSR(prior_fields={"canny_impl": "cuda"})


def test_opencv_canny_equals_opencv_eager_jit_and_vmap(faces):
    reference = opencv_canny(faces)
    assert 0.05 < reference.mean() < 0.5, "faces should have a fair share of edge pixels"
    canny = edges.canny_opencv
    np.testing.assert_array_equal(np.asarray(canny(faces)), reference)
    np.testing.assert_array_equal(np.asarray(jax.jit(canny)(faces)), reference)
    stacked = jax.vmap(canny)(faces.reshape(2, 4, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(stacked).reshape(reference.shape), reference)
    np.testing.assert_array_equal(np.asarray(canny(faces, 20, 60)), opencv_canny(faces, 20, 60))
    assert not np.array_equal(opencv_canny(faces, 20, 60), reference)


def test_opencv_canny_under_shard_map_calls_back_per_shard(faces, callback_batches):
    mesh = data_mesh(jax.devices()[:4])
    sharded = jax.shard_map(edges.canny_opencv, mesh=mesh, in_specs=PartitionSpec(DATA_AXIS),
                            out_specs=PartitionSpec(DATA_AXIS))
    out = jax.jit(sharded)(jax.device_put(faces, batch_sharding(mesh)))
    np.testing.assert_array_equal(np.asarray(out), opencv_canny(faces))
    assert callback_batches == [(2,)] * 4, f"each of 4 shards must see 2 of 8 images: {callback_batches}"


def test_opencv_canny_under_a_mesh_splits_the_batch_itself(faces, callback_batches):
    mesh = data_mesh(jax.devices()[:4])
    with jax.set_mesh(mesh):
        out = jax.jit(lambda x: edges.canny_opencv(x * 1.0))(jax.device_put(faces, batch_sharding(mesh)))
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
    for op in (edges.canny_jax, edges.canny_opencv, edges.dog):
        grad = jax.grad(lambda im: jnp.sum(op(im) * im[..., :1]))(x)
        assert np.all(np.asarray(grad)[..., 1:] == 0), op.__name__



def test_the_paper_priors_are_registered_with_their_fields_and_panels():
    assert list(edges.PRIORS) == ["canny", "dog"]
    assert {name: (dict(p.fields), p.panel) for name, p in edges.PRIORS.items()} == {
        "canny": ({"canny_thresholds": (50.0, 150.0), "canny_impl": "jax"}, "binary"),
        "dog": ({"dog_sigmas": (1.0, 1.6)}, "signed")}
    assert edges.implementation_fields() == ("canny_impl",)
    sr = models.default_config().sr
    assert {name: sr[name] for name in edges.prior_defaults()} == edges.prior_defaults()
    assert tuple(sr.edges) == ("canny", "dog") and sr.iterations == 3


def sobel_magnitude(images, sobel_gain):
    """A toy prior: `sobel_gain` times the L1 Sobel magnitude of the channel mean (float32)."""
    grey = jnp.round(255.0 * jnp.mean(jax.lax.stop_gradient(images), -1))
    dx, dy = edges.sobel(grey.astype(jnp.int32))
    return (sobel_gain * (jnp.abs(dx) + jnp.abs(dy)) / 1020.0)[..., None].astype(jnp.float32)


@pytest.fixture
def toy_prior():
    """'sobel' registered (field `sobel_gain`, default 1.0) for one test, then removed."""
    prior = edges.register_prior("sobel", edges.EdgePrior(sobel_magnitude, {"sobel_gain": 1.0}, "signed"))
    yield prior
    edges.PRIORS.unregister("sobel")


def test_a_registered_prior_reaches_iteration_2_by_name(toy_prior):
    lr = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)), jnp.float32)
    with pytest.raises(ValueError, match=r"unknown \['sobl'\]; known \['canny', 'dog', 'sobel'\]"):
        models.FeedbackSR(**SMALL_SR, edges=("sobl",))
    config = models.default_config()
    assert config.sr.sobel_gain == 1.0 and edges.PRIORS["sobel"].panel == "signed"
    config.sr.update(features=8, groups=2, edges=("sobel", "dog"), sobel_gain=2.0)
    net = models.build_sr(config)
    assert net.prior_field("sobel_gain") == 2.0
    variables = net.init(jax.random.key(0), lr)
    outputs, maps = net.apply(variables, lr, return_edges=True)
    assert list(maps) == ["sobel", "dog"]
    np.testing.assert_array_equal(np.asarray(maps["sobel"]), np.asarray(sobel_magnitude(outputs[0], 2.0)))
    assert float(jnp.max(maps["sobel"])) > 0.05
    np.testing.assert_allclose(np.asarray(maps["dog"]), np.asarray(edges.dog(outputs[1])), atol=1e-7)
    zero = net.clone(edges=())
    zero_outputs, zero_maps = zero.apply(variables, lr, return_edges=True)
    assert zero_maps == {}
    np.testing.assert_array_equal(np.asarray(outputs[0]), np.asarray(zero_outputs[0]))
    assert float(jnp.max(jnp.abs(outputs[1] - zero_outputs[1]))) > 1e-4, "the prior must reach iteration 2"
    halved = net.clone(prior_fields={**dict(net.prior_fields), "sobel_gain": 1.0}).apply(variables, lr)
    assert float(jnp.max(jnp.abs(halved[1] - outputs[1]))) > 1e-4, "iteration 2 must follow sobel_gain"


def test_registering_refuses_taken_names_shared_fields_and_unknown_panels(toy_prior):
    toy = edges.EdgePrior(sobel_magnitude, {"sobel_gain": 1.0}, "signed")
    with pytest.raises(ValueError, match="'sobel' is already registered"):
        edges.register_prior("sobel", toy)
    with pytest.raises(ValueError, match="already read by other priors"):
        edges.register_prior("sobel2", toy)
    with pytest.raises(ValueError, match="panel must be one of"):
        edges.EdgePrior(sobel_magnitude, {"sobel_gain": 1.0}, "rgb")
    assert list(edges.PRIORS) == ["canny", "dog", "sobel"]
