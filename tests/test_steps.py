"""The stages' steps: each loss term by hand, where gradients flow, data parallelism, the
learning-rate schedule."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import smoke
from fsr_jax import edges, stages
from fsr_jax.mesh import batch_sharding, data_mesh, replicated
from fsr_jax.stages import teacher_student
from fsr_jax.steps import OptimizerSpec, make_optimizer, scan_steps
from fsr_jax.models import layers
from helpers import STAGE1, STAGE2, read_faces

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

SGD = optax.sgd(1.0)  # params change by exactly -gradient: gradients can be compared


def softplus(x):
    return np.logaddexp(0.0, x)


@pytest.fixture(scope="module")
def batch(faces_dir):
    """A tiny fixed batch of real faces: 8 HR (64x64) and 8 unpaired real LR (16x16)."""
    return {"hr": jnp.asarray(read_faces(faces_dir / "train" / "HIGH", 8)),
            "lr": jnp.asarray(read_faces(faces_dir / "train" / "LOW", 8))}


def spec_of(stage, dtype="float32", canny_impl="jax", zero_init_logit=True, degradation=(), **teacher_student):
    """The StepSpec of stage `stage` (a name) under the smoke config with these changes
    (`degradation`: (field, value) pairs of that section; keywords: fields of teacher_student)."""
    config = smoke.get_config()
    config.model.dtype = dtype
    config.model.sr.canny_impl = canny_impl
    config.model.discriminator.zero_init_logit = zero_init_logit
    config.degradation.update(dict(degradation))
    config.teacher_student.update(teacher_student)
    return stages.step_spec(config, stages.get(stage), steps_per_epoch=100)


@functools.lru_cache(maxsize=None)
def setup(stage, tx=SGD, **changes):
    """(spec, nets, initial state, step) of `stage`; stage 2's DeNet randomly initialised. Built
    once per arguments, so that tests jitting the same step share its compilation (steps do not
    donate their input state, so sharing it is safe)."""
    spec = spec_of(stage, **changes)
    state = stages.init_state(spec, tx, 0, spec.stage.init_frozen(spec, jax.random.key(7)))
    return spec, spec.modules, state, spec.stage.step(spec, tx)


def run(fn, *args):
    return jax.device_get(fn(*args))


def apply(module, params, x):
    return np.asarray(module.apply({"params": params}, x))


def test_stage1_terms_by_hand(batch):
    _, nets, state, step = setup(STAGE1)
    hr, lr = np.asarray(batch["hr"]), np.asarray(batch["lr"])
    p = {k: v.params for k, v in state.nets.items()}
    fake = apply(nets.down, p["denet"], hr)
    target = np.asarray(layers.bicubic_downsample(batch["hr"]))
    _, metrics = jax.jit(step)(state, batch)
    d_fake, d_real = apply(nets.disc("d_lr"), p["d_lr"], fake), apply(nets.disc("d_lr"), p["d_lr"], lr)
    assert float(metrics["denet/content"]) == pytest.approx(np.mean(np.abs(fake - target)), rel=1e-5)
    assert float(metrics["denet/adv"]) == pytest.approx(np.mean(softplus(-d_fake)), rel=1e-5)
    assert float(metrics["d_lr/loss"]) == pytest.approx(
        np.mean(softplus(-d_real)) + np.mean(softplus(d_fake)), rel=1e-5)


def test_stage1_remedies_clip_what_d_lr_sees_and_slow_its_steps(batch):
    """clip_for_discriminator: D_LR and DeNet's adversarial term see DeNet's output clipped to
    [0, 1]; discriminator_lr_scale: D_LR's step is that fraction of the full one (SGD here, so
    exactly; Adam's state does not depend on the rate either)."""
    hr, lr = np.asarray(batch["hr"]), np.asarray(batch["lr"])
    results = {}
    for clip, scale in ((False, 1.0), (True, 1.0), (False, 0.25)):
        # A discriminator whose logit layer is not zero at first: it tells inputs apart.
        spec, nets, state, step = setup(STAGE1, zero_init_logit=False, degradation=(("clip_for_discriminator", clip),
                                                                             ("discriminator_lr_scale", scale)))
        # A DeNet whose output strays outside [0, 1], as an early one does.
        denet = state.nets["denet"].replace(params=jax.tree_util.tree_map(lambda x: 40 * x, state.nets["denet"].params))
        state = state.replace(nets={**state.nets, "denet": denet})
        results[clip, scale] = (state, *run(jax.jit(step), state, batch))
    state, _, metrics = results[True, 1.0]
    fake = apply(nets.down, state.nets["denet"].params, hr)
    assert (fake > 1).mean() > 0.01 and (fake < 0).mean() > 0.01
    d = lambda x: apply(nets.disc("d_lr"), state.nets["d_lr"].params, x)  # noqa: E731
    assert float(metrics["denet/adv"]) == pytest.approx(np.mean(softplus(-d(np.clip(fake, 0, 1)))), rel=1e-5)
    assert float(metrics["d_lr/loss"]) == pytest.approx(
        np.mean(softplus(-d(lr))) + np.mean(softplus(d(np.clip(fake, 0, 1)))), rel=1e-5)
    assert float(metrics["denet/adv"]) != pytest.approx(float(results[False, 1.0][2]["denet/adv"]), rel=1e-3)
    before = jax.tree_util.tree_leaves(state.nets["d_lr"].params)
    full = jax.tree_util.tree_leaves(results[False, 1.0][1].nets["d_lr"].params)
    slow = jax.tree_util.tree_leaves(results[False, 0.25][1].nets["d_lr"].params)
    for b, f, s in zip(before, full, slow):
        step_full, step_slow = np.asarray(f) - b, np.asarray(s) - b   # float32 sums: rounding of the largest
        np.testing.assert_allclose(step_slow, 0.25 * step_full, rtol=1e-4, atol=1e-6 * np.abs(step_full).max())
    denet_full = jax.tree_util.tree_leaves(results[False, 1.0][1].nets["denet"].params)
    denet_slow = jax.tree_util.tree_leaves(results[False, 0.25][1].nets["denet"].params)
    assert all(np.array_equal(a, b) for a, b in zip(denet_full, denet_slow))  # DeNet's step is untouched


def test_stage2_terms_by_hand(batch):
    _, nets, state, step = setup(STAGE2)
    hr, lr = np.asarray(batch["hr"]), np.asarray(batch["lr"])
    p = {k: v.params for k, v in state.nets.items()}
    lr_syn = np.clip(apply(nets.down, state.frozen["denet"], hr), 0, 1)
    sr_t = [np.asarray(o) for o in nets.sr.apply({"params": p["tnet"]}, lr_syn)]
    pseudo = np.asarray(nets.sr.apply({"params": p["tnet"]}, lr)[-1])
    sr_s = [np.asarray(o) for o in nets.sr.apply({"params": p["snet"]}, lr)]
    cycled = apply(nets.down, p["dsnet"], sr_s[-1])
    d = lambda name, x: apply(nets.disc(name), p[name], x)  # noqa: E731
    expected = {
        "tnet/rec": np.mean([np.mean((hr - o) ** 2) for o in sr_t]),
        "tnet/adv": np.mean(softplus(-d("d_t", sr_t[-1]))),
        "d_t/loss": np.mean(softplus(-d("d_t", hr))) + np.mean(softplus(d("d_t", sr_t[-1]))),
        "snet/rec": np.mean([np.mean((pseudo - o) ** 2) for o in sr_s]),
        "snet/adv": np.mean(softplus(-d("d_s", sr_s[-1]))),
        "d_s/loss": np.mean(softplus(-d("d_s", hr))) + np.mean(softplus(d("d_s", sr_s[-1]))),
        "cycle/lr": np.mean((lr - cycled) ** 2),
        "dsnet/adv": np.mean(softplus(-d("d_ds", cycled))),
        "d_ds/loss": np.mean(softplus(-d("d_ds", lr))) + np.mean(softplus(d("d_ds", cycled))),
    }
    _, metrics = jax.jit(step)(state, batch)
    assert set(metrics) == set(expected)
    for name, value in expected.items():
        assert float(metrics[name]) == pytest.approx(value, rel=2e-4, abs=1e-7), name


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in
               zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)))


@pytest.mark.parametrize("weights, moves, stays", [
    # DSNet's adversarial term alone: it reaches DSNet and not SNet.
    (dict(student_rec_weight=0.0, student_adv_weight=0.0, cycle_weight=0.0), {"dsnet"}, {"snet"}),
    # The cycle loss alone trains SNet and DSNet.
    (dict(student_rec_weight=0.0, student_adv_weight=0.0, dsnet_adv_weight=0.0), {"snet", "dsnet"}, set()),
])
def test_gradients_flow_only_where_the_design_says(batch, weights, moves, stays):
    # Discriminators with a Kaiming logit layer: a zero one passes no adversarial gradient to
    # the generators in the first step (by design), which would hide the wiring checked here.
    _, _, state, step = setup(STAGE2, zero_init_logit=False, **weights)
    new, _ = jax.jit(step)(state, batch)
    for name in moves:
        assert changed(state.nets[name].params, new.nets[name].params), f"{name} should learn"
    for name in stays:
        assert not changed(state.nets[name].params, new.nets[name].params), f"{name} must get no gradient"


def test_tnet_learns_from_its_pairs_alone_not_from_the_student(batch):
    # The stage's TNet is exactly the teacher-pair update's TNet: nothing the student's update
    # computes (its losses use TNet's pseudo-HR) reaches TNet.
    spec, _, state, step = setup(STAGE2)
    new, _ = jax.jit(step)(state, batch)
    alone, _ = jax.jit(lambda s, b: teacher_student.teacher_pair_update(spec, s.nets, s.frozen, b["hr"], SGD))(
        state, batch)
    assert changed(state.nets["tnet"].params, new.nets["tnet"].params)
    for a, b in zip(jax.tree_util.tree_leaves(alone["tnet"]), jax.tree_util.tree_leaves(new.nets["tnet"])):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    student, _ = jax.eval_shape(
        lambda s, b: teacher_student.student_update(spec, s.nets, b["hr"], b["lr"], SGD), state, batch)
    assert "tnet" not in student


def test_denet_feeds_the_teacher_and_stays_frozen(batch):
    # Another DeNet gives TNet other pairs, so another update; DeNet itself comes back unchanged
    # and has no optimizer state.
    spec, _, state, step = setup(STAGE2)
    other = state.replace(frozen=teacher_student.STAGE.init_frozen(spec, jax.random.key(8)))
    new, _ = jax.jit(step)(state, batch)
    new_other, _ = jax.jit(step)(other, batch)
    assert changed(new.nets["tnet"].params, new_other.nets["tnet"].params)
    assert "denet" not in new.nets
    for a, b in zip(jax.tree_util.tree_leaves(state.frozen), jax.tree_util.tree_leaves(new.frozen)):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


def test_cycle_teacher_with_a_cycled_student_is_refused_at_trace_time(batch):
    # Validation refuses this config (test_config_checks); a step built around validation still
    # does not silently drop the teacher's DSNet update.
    _, _, state, step = setup(STAGE2, teacher="cycle", student=True, cycle=True)
    with pytest.raises(ValueError, match=r"both train \['d_ds', 'dsnet'\]"):
        jax.eval_shape(step, state, batch)


def test_cycle_teacher_and_bicubic_pairs_steps_run(batch):
    for teacher, expect in (("cycle", {"cycle/hr", "cycle/lr", "tnet/adv", "dsnet/adv"}),
                            ("bicubic", {"tnet/rec", "snet/rec"})):
        _, _, state, step = setup(STAGE2, teacher=teacher, student=teacher != "cycle")
        _, metrics = jax.jit(step)(state, batch)
        assert expect <= set(metrics), teacher
        assert all(np.isfinite(float(v)) for v in metrics.values())


@pytest.mark.parametrize("canny_impl", ["jax", "opencv"])
def test_four_devices_split_the_batch_and_give_the_one_device_gradients(batch, monkeypatch, canny_impl):
    _, _, state, step = setup(STAGE2, canny_impl=canny_impl)
    calls = []
    original = edges._canny_host
    monkeypatch.setattr(edges, "_canny_host",
                        lambda x, low, high: calls.append(np.shape(x)[0]) or original(x, low, high))

    def deltas(devices):
        mesh = data_mesh(devices)
        repl = replicated(mesh)
        with jax.set_mesh(mesh):
            fn = jax.jit(step, out_shardings=(repl, repl))
            placed = jax.device_put(state, repl)
            new, _ = fn(placed, jax.device_put(batch, batch_sharding(mesh)))
        return jax.tree_util.tree_map(lambda a, b: np.asarray(a) - np.asarray(b),
                                      jax.device_get(new.nets), jax.device_get(state.nets))

    def check_callbacks(images_per_call):
        """The host Canny calls back once per device shard; the device Canny never."""
        expected = set() if canny_impl == "jax" else {images_per_call}
        assert set(calls) == expected and (calls or canny_impl == "jax"), calls
        calls.clear()

    one = deltas(jax.devices()[:1])
    check_callbacks(8)
    four = deltas(jax.devices()[:4])
    check_callbacks(2)
    flat_one = jax.tree_util.tree_leaves_with_path(one)
    flat_four = jax.tree_util.tree_leaves(four)
    for (path, a), b in zip(flat_one, flat_four):
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-6, err_msg=jax.tree_util.keystr(path))


def test_bfloat16_compute_keeps_float32_params_optimizer_state_and_losses(batch):
    """model.dtype=bfloat16: the convolutions run in bf16, while parameters, Adam moments and
    every loss stay float32, and the first step's losses are near float32's."""
    def first_step(dtype):
        _, _, state, step = setup(STAGE2, tx=optax.adam(1e-4), dtype=dtype)
        conv_dtypes = {str(eqn.invars[0].aval.dtype) for eqn in _equations(jax.make_jaxpr(step)(state, batch).jaxpr)
                       if eqn.primitive.name == "conv_general_dilated"}
        return jax.jit(step)(state, batch), conv_dtypes

    (state32, metrics32), convs32 = first_step("float32")
    (state16, metrics16), convs16 = first_step("bfloat16")
    assert convs32 == {"float32"} and convs16 == {"bfloat16"}, (convs32, convs16)
    leaves = jax.tree_util.tree_leaves((state16.nets, metrics16))
    assert {str(leaf.dtype) for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)} == {"float32"}
    for name, value in metrics32.items():
        assert float(metrics16[name]) == pytest.approx(float(value), rel=0.05, abs=1e-3), name


def _equations(jaxpr):
    """Every equation of a jaxpr, including those inside sub-jaxprs (jit, loops, custom rules)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else [param]):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def test_the_device_loop_of_several_steps_equals_the_steps_one_by_one(batch):
    """scan_steps' loop form (accelerators) and unrolled form (CPU) both run K steps in order:
    same parameters (to float rounding: XLA:CPU computes a loop body's convolutions another way)
    and one metric per step."""
    _, _, state, step = setup(STAGE1, tx=optax.adam(1e-3))
    batches = {k: jnp.stack([v, v[::-1]]) for k, v in batch.items()}      # K = 2 different batches
    one_by_one = state
    for i in range(2):
        one_by_one, _ = jax.jit(step)(one_by_one, {k: v[i] for k, v in batches.items()})
    for unroll in (True, False):
        new, metrics = jax.jit(scan_steps(step, unroll))(state, batches)
        assert {v.shape for v in metrics.values()} == {(2,)}
        for a, b in zip(jax.tree_util.tree_leaves(one_by_one.nets), jax.tree_util.tree_leaves(new.nets)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6, err_msg=f"unroll={unroll}")


def test_learning_rate_halves_every_ten_epochs_by_default():
    # The paper: 1e-4, halved every 10 epochs (staircase), as the step count crosses each boundary.
    tx = make_optimizer(OptimizerSpec.from_config(smoke.get_config().optimizer), steps_per_epoch=3)
    # Adam's update of a constant gradient g is -lr * sign(g) (to eps): it shows the lr in use.
    params, grads = jnp.zeros(2), jnp.array([0.5, -2.0])
    opt_state = tx.init(params)
    seen = []
    for _ in range(61):
        updates, opt_state = tx.update(grads, opt_state, params)
        seen.append(float(-updates[0]))
    np.testing.assert_allclose(seen[:30], 1e-4, rtol=1e-4)
    np.testing.assert_allclose(seen[30:60], 5e-5, rtol=1e-4)
    np.testing.assert_allclose(seen[60], 2.5e-5, rtol=1e-4)
