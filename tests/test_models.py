"""The networks: exact sizes, equation (1), the wiring of the edge priors, gradients."""
import json
from typing import Any

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from fsr_jax import edges, losses, models
from fsr_jax.models import Downsampler, FeedbackSR, LightCNN
from fsr_jax.models import layers
from fsr_jax.models.layers import bilinear_upsample
from helpers import conv_reference, conv_transpose_reference, read_faces

SMALL_SR = dict(features=8, groups=2, iterations=3)


def count(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


@pytest.fixture(scope="module")
def lr_faces(faces_dir):
    """4 real LR faces, (4, 16, 16, 3) in [0, 1]."""
    return jnp.asarray(read_faces(faces_dir / "test" / "celeba" / "LR", 4))


@pytest.fixture(scope="module")
def hr_faces(faces_dir):
    """2 real HR faces, (2, 64, 64, 3) in [0, 1]."""
    return jnp.asarray(read_faces(faces_dir / "test" / "celeba" / "HR", 2))


def test_full_default_models_have_the_reference_sizes_and_shapes():
    cfg = models.default_config()
    lr = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    hr = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    cases = [
        (models.build_sr(cfg), lr, 3_669_407, [(2, 64, 64, 3)] * 3),
        (models.build_downsampler(cfg), hr, 1_259_075, (2, 16, 16, 3)),
        (models.build_discriminator(cfg), hr, 2_340_193, (2, 1)),
        (models.build_discriminator(cfg), lr, 1_357_153, (2, 1)),
    ]
    for module, example, params, out_shape in cases:
        variables = jax.eval_shape(lambda x, m=module: m.init(jax.random.key(0), x), example)
        assert count(variables["params"]) == params, type(module).__name__
        out = jax.eval_shape(module.apply, variables, example)
        shapes = [o.shape for o in out] if isinstance(out, list) else out.shape
        assert shapes == out_shape, type(module).__name__
    prelus = [p for p in jax.tree_util.tree_leaves_with_path(
        jax.eval_shape(lambda x: models.build_sr(cfg).init(jax.random.key(0), x), lr))
        if "negative_slope" in jax.tree_util.keystr(p[0])]
    assert len(prelus) == 28


def test_output_is_the_bilinear_upsampling_when_the_residual_is_zero(lr_faces):
    """Equation (1): I_SR(t) = I_Res(t) + H_UP(I_LR), H_UP bilinear with half-pixel centres."""
    net = FeedbackSR(**SMALL_SR)
    params = net.init(jax.random.key(0), lr_faces)["params"]
    params["recb_out"] = jax.tree_util.tree_map(jnp.zeros_like, params["recb_out"])
    outputs = net.apply({"params": params}, lr_faces)
    reference = np.stack([cv2.resize(np.asarray(im), (64, 64), interpolation=cv2.INTER_LINEAR)
                          for im in lr_faces])
    assert len(outputs) == 3
    for out in outputs:
        np.testing.assert_allclose(np.asarray(out), reference, atol=1e-6, rtol=0)


def test_dense_and_transposed_projections_give_the_same_network(lr_faces):
    plain = FeedbackSR(**SMALL_SR, projection="transpose")
    variables = plain.init(jax.random.key(1), lr_faces)
    reference = plain.apply(variables, lr_faces)
    for impl in ("dense", "dense_3x3", "block"):
        net = FeedbackSR(**SMALL_SR, projection=impl)
        assert jax.tree.map(np.shape, net.init(jax.random.key(1), lr_faces)) == jax.tree.map(np.shape, variables)
        for a, b in zip(net.apply(variables, lr_faces), reference):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, err_msg=impl)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_projection_form_is_the_transposed_or_strided_conv(scale):
    from fsr_jax.models.layers import PROJECTION_IMPLS, DownProjection, UpProjection

    rng = np.random.default_rng(scale)
    for layer, size in ((UpProjection, 5), (DownProjection, 5 * scale)):
        x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
        params = layer(4, scale, "transpose").init(jax.random.key(0), x)
        params["params"]["bias"] = params["params"]["bias"] + 0.5
        reference = np.asarray(layer(4, scale, "transpose").apply(params, x))
        for impl in PROJECTION_IMPLS:
            out = jax.jit(layer(4, scale, impl).apply)(params, x)
            np.testing.assert_allclose(np.asarray(out), reference, atol=1e-5, err_msg=f"{layer.__name__} {impl}")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_projection_form_has_the_transposed_or_strided_conv_gradients(scale):
    from fsr_jax.models.layers import PROJECTION_IMPLS, DownProjection, UpProjection

    rng = np.random.default_rng(10 + scale)
    for layer, size in ((UpProjection, 5), (DownProjection, 5 * scale)):
        x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
        params, out = layer(4, scale, "transpose").init_with_output(jax.random.key(0), x)[::-1]
        weights = jnp.asarray(rng.normal(size=out.shape), jnp.float32)  # a cotangent not all ones

        def grads(impl):
            def loss(params, x):
                return jnp.sum(jnp.sin(layer(4, scale, impl).apply(params, x)) * weights)
            return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

        reference = grads("transpose")
        for impl in PROJECTION_IMPLS:
            for got, want in zip(jax.tree_util.tree_leaves(grads(impl)), jax.tree_util.tree_leaves(reference)):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5,
                                           err_msg=f"{layer.__name__} {impl}")


def test_cpu_projection_gradients_use_only_canonical_convolutions():
    """XLA:CPU runs convolutions it does not canonicalise (dim_labels other than
    b01f_01io->b01f in the optimised HLO) on a naive emitter, ~50x slower: the gradients of
    the CPU projections must not have any (the 2x2 block conv's kernel gradient was one)."""
    import re

    from fsr_jax.models.layers import DownProjection, UpProjection

    for layer, size in ((UpProjection, 16), (DownProjection, 64)):
        module = layer(64, 4, "dense")
        x = jnp.zeros((2, size, size, 64))
        params = module.init(jax.random.key(0), x)
        loss = lambda params, x: jnp.sum(module.apply(params, x) ** 2)
        hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile().as_text()
        labels = re.findall(r"dim_labels=([^,\s]+)", hlo)
        assert set(labels) <= {"b01f_01io->b01f"}, (layer.__name__, labels)


def test_dense_projection_and_pointwise_conv_are_chosen_per_platform():
    """'dense' lowers to the 2x2 block conv on CPU and to the 3x3 form for GPUs (lowering only,
    no GPU needed); a 1x1 conv is a dot_general on CPU and stays a convolution for GPUs."""
    from fsr_jax.models.layers import UpProjection, conv

    x = jnp.zeros((1, 4, 4, 8))
    up = UpProjection(8, 4, "dense")
    pointwise = conv(8, 1, jnp.float32)
    for module, per_platform in ((up, {"cpu": "2x2x8x128", "cuda": "3x3x8x128"}),
                                 (pointwise, {"cpu": "dot_general", "cuda": "convolution"})):
        variables = module.init(jax.random.key(0), x)
        for platform, expected in per_platform.items():
            text = jax.jit(module.apply).trace(variables, x).lower(lowering_platforms=(platform,)).as_text()
            unexpected = [form for form in per_platform.values() if form != expected]
            assert expected in text and not any(form in text for form in unexpected), (module, platform)
    np.testing.assert_allclose(
        np.asarray(pointwise.apply(variables, x + 1.0)),
        np.asarray(jax.lax.conv_general_dilated(
            x + 1.0, variables["params"]["kernel"], (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC")) + variables["params"]["bias"]), atol=1e-6)


@pytest.mark.parametrize("scale, size, channels, features", [(2, 5, 3, 4), (3, 5, 3, 4), (4, 16, 5, 6)])
def test_every_projection_form_equals_a_numpy_loop(scale, size, channels, features):
    """Up: torch's ConvTranspose2d(k = scale + 4, stride = scale, padding 2) with lax's kernel
    flipped; down: Conv2d(same k, stride, padding). Both as plain loops over taps in helpers."""
    from fsr_jax.models.layers import PROJECTION_IMPLS, DownProjection, UpProjection

    rng = np.random.default_rng(20 + scale)
    k = scale + 4
    for layer, x_size in ((UpProjection, size), (DownProjection, size * scale)):
        x = rng.normal(size=(2, x_size, x_size, channels)).astype(np.float32)
        params = layer(features, scale, "transpose").init(jax.random.key(scale), x)
        params["params"]["bias"] = params["params"]["bias"] + rng.normal(size=features).astype(np.float32)
        kernel, bias = (np.asarray(params["params"][name]) for name in ("kernel", "bias"))
        assert kernel.shape == (k, k, channels, features)
        if layer is UpProjection:
            reference = conv_transpose_reference(x, kernel[::-1, ::-1], bias, scale, 2)
            assert reference.shape == (2, size * scale, size * scale, features)
            mirrored = conv_transpose_reference(x, kernel, bias, scale, 2)
        else:
            reference = conv_reference(x, kernel, bias, scale, 2)
            assert reference.shape == (2, size, size, features)
            mirrored = conv_reference(x, kernel[::-1, ::-1], bias, scale, 2)
        # The comparison tells the kernel's orientation apart (a flipped kernel would fail it).
        assert np.abs(mirrored - reference).max() > 0.1, layer.__name__
        for impl in PROJECTION_IMPLS:
            out = np.asarray(jax.jit(layer(features, scale, impl).apply)(params, x))
            np.testing.assert_allclose(out, reference, atol=1e-5, rtol=1e-5, err_msg=f"{layer.__name__} {impl}")


@pytest.fixture
def edge_spy(monkeypatch):
    """Records the image each edge operator is given."""
    seen = {}
    for name in ("canny", "dog"):
        original = getattr(edges, name)

        def spy(image, *args, _name=name, _original=original, **kwargs):
            seen[_name] = np.asarray(image)
            return _original(image, *args, **kwargs)

        monkeypatch.setattr(edges, name, spy)
    return seen


def test_canny_sees_iteration_1_and_dog_iteration_2(lr_faces, edge_spy):
    net = FeedbackSR(**SMALL_SR)
    variables = net.init(jax.random.key(0), lr_faces)
    edge_spy.clear()
    outputs, maps = net.apply(variables, lr_faces, return_edges=True)
    np.testing.assert_array_equal(edge_spy["canny"], np.asarray(outputs[0]))
    np.testing.assert_array_equal(edge_spy["dog"], np.asarray(outputs[1]))
    np.testing.assert_array_equal(np.asarray(maps["canny"]), np.asarray(edges.canny(outputs[0])))
    np.testing.assert_allclose(np.asarray(maps["dog"]), np.asarray(edges.dog(outputs[1])), atol=1e-7)


def _outputs(lr, **fields):
    net = FeedbackSR(**SMALL_SR, **fields)
    variables = net.init(jax.random.key(0), lr)
    return [np.asarray(o) for o in net.apply(variables, lr)]


def test_priors_change_only_the_iterations_they_feed(lr_faces):
    base = _outputs(lr_faces)
    other_canny = _outputs(lr_faces, prior_fields={"canny_thresholds": (10.0, 40.0)})
    other_dog = _outputs(lr_faces, prior_fields={"dog_sigmas": (0.6, 3.0)})
    np.testing.assert_array_equal(other_canny[0], base[0])
    assert np.abs(other_canny[1] - base[1]).max() > 1e-4, "iteration 2 must follow the Canny thresholds"
    np.testing.assert_array_equal(other_dog[0], base[0])
    np.testing.assert_array_equal(other_dog[1], base[1])
    assert np.abs(other_dog[2] - base[2]).max() > 1e-4, "iteration 3 must follow the DoG sigmas"


def test_without_edges_thresholds_and_sigmas_do_nothing(lr_faces):
    base = _outputs(lr_faces, edges=())
    varied = _outputs(lr_faces, edges=(), prior_fields={"canny_thresholds": (10.0, 40.0), "dog_sigmas": (0.6, 3.0)})
    for a, b in zip(base, varied):
        np.testing.assert_array_equal(a, b)
    canny_only = _outputs(lr_faces, edges=("canny",))
    canny_only_sigmas = _outputs(lr_faces, edges=("canny",), prior_fields={"dog_sigmas": (0.6, 3.0)})
    np.testing.assert_array_equal(canny_only[2], canny_only_sigmas[2])
    assert np.abs(canny_only[1] - base[1]).max() > 1e-4, "the Canny prior must reach iteration 2"


def _nonzero_finite_grads(grads):
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert all(np.isfinite(np.asarray(g)).all() for _, g in flat)
    return {jax.tree_util.keystr(path): np.asarray(g) for path, g in flat}


@pytest.mark.parametrize("edge_kinds", [("canny", "dog"), ()])
def test_every_sr_parameter_gets_a_gradient(lr_faces, hr_faces, edge_kinds):
    net = FeedbackSR(**SMALL_SR, edges=edge_kinds)
    params = net.init(jax.random.key(0), lr_faces[:2])["params"]
    target = hr_faces

    def loss(p):
        return sum(jnp.mean((o - target) ** 2) for o in net.apply({"params": p}, lr_faces[:2])) / 3

    grads = _nonzero_finite_grads(jax.grad(loss)(params))
    prior_key = "['fuse_0']['Conv_0']['kernel']"
    for key, g in grads.items():
        if key == prior_key:
            prior_slice = g[..., -16:, :]   # the prior's 16 input channels come last
            assert np.any(g[..., :-16, :] != 0), key
            assert np.all(prior_slice == 0) == (edge_kinds == ()), key
        else:
            assert np.any(g != 0), f"no gradient reaches {key}"


@pytest.mark.slow
def test_every_downsampler_and_discriminator_parameter_gets_a_gradient(hr_faces):
    """Wiring: with plain Kaiming everywhere every parameter gets a gradient. (With the default
    zero-initialised layers, the layers before them get theirs from the second step on.)"""
    down = Downsampler(features=8, blocks=2, zero_init_residual=False)
    disc = LightCNN(width=0.125, zero_init_logit=False)
    for net, x, target in ((down, hr_faces, jax.image.resize(hr_faces, (2, 16, 16, 3), "bicubic")),
                           (disc, hr_faces, jnp.ones((2, 1)))):
        params = net.init(jax.random.key(0), x)["params"]
        grads = jax.grad(lambda p: jnp.mean(jnp.abs(net.apply({"params": p}, x) - target)))(params)
        for key, g in _nonzero_finite_grads(grads).items():
            assert np.any(g != 0), f"no gradient reaches {type(net).__name__}{key}"


def test_small_models_map_shapes(hr_faces, lr_faces):
    assert Downsampler(features=8, blocks=1).init_with_output(jax.random.key(0), hr_faces)[0].shape == (2, 16, 16, 3)
    for x in (hr_faces, lr_faces):
        assert LightCNN(width=0.125).init_with_output(jax.random.key(0), x)[0].shape == (x.shape[0], 1)


def _saved_model_section(cfg) -> dict:
    """A `model` config section as an older fsr_jax saved it in config.json: the SR iteration
    count as `sr.steps`, `discriminator.spectral_norm` present, tuples as lists."""
    saved = json.loads(cfg.to_json())
    saved["sr"]["steps"] = saved["sr"].pop("iterations")
    saved["discriminator"]["spectral_norm"] = False
    return saved


def test_model_sections_of_older_runs_build_the_same_networks():
    cfg = models.default_config()
    cfg.sr.update(features=8, groups=2, edges=("canny",), canny_thresholds=(20.0, 60.0))
    cfg.discriminator.width = 0.125
    saved = _saved_model_section(cfg)
    del saved["sr"]["canny_impl"]               # saved before the field existed: its default
    old = ml_collections.ConfigDict(saved)
    assert models.build_sr(old) == models.build_sr(cfg)
    assert hash(models.build_sr(old)) == hash(models.build_sr(cfg))
    assert models.build_discriminator(old) == models.build_discriminator(cfg)
    upgraded = models.upgrade_config(_saved_model_section(cfg))
    assert upgraded.to_dict() == json.loads(cfg.to_json())
    saved["discriminator"]["spectral_norm"] = True
    for refuse in (models.build_discriminator, models.upgrade_config):
        with pytest.raises(ValueError, match="spectral_norm is no longer supported"):
            refuse(ml_collections.ConfigDict(saved))


def test_discriminator_has_the_lightcnn9_parameter_names(hr_faces):
    params = LightCNN(width=0.125).init(jax.random.key(0), hr_faces)
    assert set(params) == {"params"}
    names = {"/".join(str(getattr(k, "key", k)) for k in path)
             for path, _ in jax.tree_util.tree_leaves_with_path(params["params"])}
    mfm = {f"MFM_{i}/Conv_0/{w}" for i in range(9) for w in ("kernel", "bias")}
    assert names == mfm | {"MFM_9/Dense_0/kernel", "MFM_9/Dense_0/bias", "Dense_0/kernel", "Dense_0/bias"}


@pytest.mark.parametrize("fields, message", [
    (dict(edges=("sobel", "dog")),
     r"edges must be registered edge priors: unknown \['sobel'\]; known \['canny', 'dog'"),
    (dict(edges=("dog", "dog")), "must not name a prior twice"),
    (dict(iterations=2), r"at most iterations - 1 = 1"),
    (dict(prior_fields={"canny_sigma": 1.0}), r"no registered edge prior reads \['canny_sigma'\]"),
    (dict(prior_fields={"dog_sigmas": (1.0, -1.6)}), "dog_sigmas must be two positive"),
    (dict(projection="fft"), "projection must be"),
    (dict(scale=8), "scale must be"),
    (dict(iterations=0), "iterations must be"),
])
def test_bad_sr_settings_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        FeedbackSR(**fields)


def test_any_registered_priors_up_to_iterations_minus_one_are_accepted():
    for edges_, iterations in (((), 1), (("dog",), 2), (("dog", "canny"), 3), (("canny",), 4)):
        net = FeedbackSR(edges=list(edges_), iterations=iterations)
        assert net.edges == edges_ and hash(net) == hash(FeedbackSR(edges=edges_, iterations=iterations))


def test_bad_dtype_is_refused_by_name():
    cfg = models.default_config()
    cfg.dtype = "float16"
    with pytest.raises(ValueError, match="model.dtype"):
        models.build_sr(cfg)


def _denet_l1_after(steps: int, hr: jax.Array, **fields) -> tuple[float, float]:
    """(L1 to bicubic at initialisation, after `steps` Adam steps at the paper's lr 1e-4) of a
    Downsampler on the faces `hr`."""
    net = Downsampler(**fields)
    params = net.init(jax.random.key(0), hr[:1])["params"]
    tx = optax.adam(1e-4)
    target = layers.bicubic_downsample(hr)

    def loss(p):
        return losses.l1(net.apply({"params": p}, hr), target)

    @jax.jit
    def step(p, opt):
        value, grads = jax.value_and_grad(loss)(p)
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, value

    first, opt = float(loss(params)), tx.init(params)
    for _ in range(steps):
        params, opt, _ = step(params, opt)
    return first, float(loss(params))


@pytest.mark.slow
def test_every_network_starts_near_the_image_range(hr_faces, lr_faces):
    """At the paper's sizes: DeNet's output stays near [0, 1] (plain Kaiming blocks put it in the
    thousands), the SR nets start near the bilinear upsampling, discriminators at D = 0.5."""
    cfg = models.default_config()
    down = models.build_downsampler(cfg)
    out = down.apply(down.init(jax.random.key(0), hr_faces), hr_faces)
    assert float(jnp.abs(out).mean()) < 2.0 and float(jnp.abs(out).max()) < 10.0
    sr = models.build_sr(cfg)
    outputs = sr.apply(sr.init(jax.random.key(0), lr_faces), lr_faces)
    upsampled = bilinear_upsample(lr_faces, 4)
    assert max(float(jnp.abs(o - upsampled).mean()) for o in outputs) < 0.1
    disc = models.build_discriminator(cfg)
    for faces in (hr_faces, lr_faces):
        np.testing.assert_array_equal(np.asarray(disc.apply(disc.init(jax.random.key(0), faces), faces)), 0.0)


@pytest.mark.slow
def test_denet_learns_the_bicubic_content_from_its_initialisation(faces_dir):
    """16 residual blocks, the paper's lr: 10 Adam steps bring the L1 to bicubic below 0.3 with
    zero-initialised residual branches (measured 0.59 -> 0.18 at width 32); plain Kaiming
    blocks start in the thousands and are still in the hundreds after the same steps."""
    hr = jnp.asarray(read_faces(faces_dir / "train" / "HIGH", 4))
    start, end = _denet_l1_after(10, hr, features=32, blocks=16)
    plain_start, plain_end = _denet_l1_after(10, hr, features=32, blocks=16, zero_init_residual=False)
    assert start < 1.5 and end < 0.3, (start, end)
    assert plain_start > 100 * start and plain_end > 100 * end, (plain_start, plain_end)


def test_bicubic_downsample_is_within_3_grey_levels_of_pil(faces_dir):
    hr = read_faces(faces_dir / "test" / "celeba" / "HR", 8)
    ours = np.round(np.asarray(layers.bicubic_downsample(jnp.asarray(hr))) * 255)
    pil = np.stack([np.asarray(Image.fromarray(np.round(im * 255).astype(np.uint8)).resize(
        (16, 16), Image.BICUBIC), np.float32) for im in hr])
    assert np.abs(ours - pil).max() <= 3.0
    shared_lr = read_faces(faces_dir / "test" / "celeba" / "LR", 8) * 255
    np.testing.assert_array_equal(pil, shared_lr)  # the shared test LR are PIL bicubic


def test_a_bicubic_skip_adds_the_inputs_bicubic_downscaling_with_the_same_parameters(hr_faces):
    plain, skip = Downsampler(8, 1), Downsampler(8, 1, bicubic_skip=True)
    params = plain.init(jax.random.key(0), hr_faces)["params"]
    skip_params = skip.init(jax.random.key(0), hr_faces)["params"]
    assert jax.tree_util.tree_structure(skip_params) == jax.tree_util.tree_structure(params)
    # It starts as bicubic downscaling itself: its last conv starts at zero.
    np.testing.assert_array_equal(skip.apply({"params": skip_params}, hr_faces), layers.bicubic_downsample(hr_faces))
    np.testing.assert_allclose(skip.apply({"params": params}, hr_faces),
                               plain.apply({"params": params}, hr_faces) + layers.bicubic_downsample(hr_faces),
                               rtol=1e-6, atol=1e-6)


def test_the_summary_command_refuses_a_zero_size_in_one_line(capsys):
    from fsr_jax.models import __main__ as summary  # noqa: PLC0415

    assert summary.main(["--summary", "--config.model.sr.features=0"]) == 1
    assert capsys.readouterr().err.strip() == "error: model.sr.features must be positive, got 0"


@pytest.mark.slow
def test_a_registered_discriminator_type_trains_as_one_pairs_discriminator(tmp_path, smoke_tfds_dir):
    """A second discriminator type is one registration plus one config line: D_LR becomes a
    one-conv patch discriminator, the other pairs stay LightCNN; stage 1 trains with it."""
    from configs import smoke  # noqa: PLC0415
    from fsr_jax import checkpointing, train  # noqa: PLC0415

    class Patch(nn.Module):
        dtype: Any = jnp.float32

        @nn.compact
        def __call__(self, x):
            return nn.Conv(1, (3, 3), dtype=self.dtype)(x).mean(axis=(1, 2, 3))

    models.DISCRIMINATORS.register("patch", lambda disc, dtype: Patch(dtype))
    try:
        config = smoke.get_config()
        config.data.tfds_dir = smoke_tfds_dir
        config.stages = ("degradation",)
        config.degradation.max_steps = 2
        config.model.discriminator.pair_types = "d_lr=patch"
        assert models.discriminator_types(config.model.discriminator) == {
            "d_lr": "patch", "d_t": "lightcnn", "d_s": "lightcnn", "d_ds": "lightcnn"}
        train.train_and_evaluate(config, str(tmp_path))
        params, step = checkpointing.restore_params(tmp_path / "degradation" / "checkpoints", ("d_lr",))
        assert step == 2 and list(params["d_lr"]) == ["Conv_0"]
    finally:
        models.DISCRIMINATORS.unregister("patch")
    config.model.discriminator.pair_types = "d_lr=patch"
    with pytest.raises(ValueError, match=r"types \['patch'\] are not registered; the types are \['lightcnn'\]"):
        models.discriminator_types(config.model.discriminator)
    for bad in ("d_x=lightcnn", "d_lr"):
        config.model.discriminator.pair_types = bad
        with pytest.raises(ValueError, match="is not <pair>=<type>"):
            models.discriminator_types(config.model.discriminator)
