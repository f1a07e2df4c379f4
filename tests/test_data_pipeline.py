"""fsr_jax.data.pipeline: process slices, epochs, flips, device sharding and resumption."""
import json

import jax
import numpy as np
import pytest

from fsr_jax import data
from fsr_jax.data import pipeline


def _faces(n, size, start=0):
    """uint8 faces whose pixel [0, 0, 0..2] encodes their index, with an asymmetric pattern."""
    faces = np.zeros((n, size, size, 3), np.uint8)
    idx = np.arange(start, start + n)
    faces[:, 0, 0, 0], faces[:, 0, 0, 1] = idx % 256, idx // 256
    faces[:, :, -1, 2] = 255  # right column marks "not flipped"
    return faces


def _ids(batch):
    """(index, flipped) of every example of a float batch made from `_faces`."""
    x = np.round(batch * 255).astype(int)
    flipped = x[:, 0, -1, 2] != 255
    corner = np.where(flipped[:, None], x[:, 0, -1, :2], x[:, 0, 0, :2])
    return [(int(a + 256 * b), bool(f)) for (a, b), f in zip(corner, flipped)]


HR, LR = _faces(103, 64), _faces(37, 16)


def _iterator(process_index=0, process_count=1, batch=8, seed=5, **kw):
    return pipeline.make_iterator(HR, LR, global_batch_size=batch, seed=seed, random_flip=True,
                                  process_index=process_index, process_count=process_count,
                                  **kw)


def _take(iterator, n):
    batches = [next(iterator) for _ in range(n)]
    iterator.close()
    return batches


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_partition_every_global_batch(process_count):
    steps = 30  # 12 steps per epoch: crosses two HR epochs and many LR epochs
    whole = _take(_iterator(), steps)
    slices = [_take(_iterator(p, process_count), steps) for p in range(process_count)]
    for step in range(steps):
        for key in ("hr", "lr"):
            parts = [s[step][key] for s in slices]
            assert all(p.shape[0] == 8 // process_count for p in parts)
            # Same examples, same flips, in process order: the global batch is unchanged.
            np.testing.assert_array_equal(np.concatenate(parts), whole[step][key])
            ids = [i for p in parts for i, _ in _ids(p)]
            if key == "hr":
                assert len(set(ids)) == len(ids)  # disjoint slices


def test_epochs_cover_hr_once_and_lr_cycles():
    iterator = _iterator(batch=8)
    assert iterator.steps_per_epoch == 103 // 8
    batches = _take(iterator, 2 * iterator.steps_per_epoch)
    for e in range(2):
        epoch = batches[e * 12:(e + 1) * 12]
        ids = [i for b in epoch for i, _ in _ids(b["hr"])]
        assert len(ids) == len(set(ids)) == 96
    lr_ids = [i for b in batches for i, _ in _ids(b["lr"])]
    for start in range(0, len(lr_ids) - 37, 37):  # each LR epoch is a permutation
        assert sorted(lr_ids[start:start + 37]) == list(range(37))
    first_epoch_order = [i for b in batches[:12] for i, _ in _ids(b["hr"])]
    second_epoch_order = [i for b in batches[12:] for i, _ in _ids(b["hr"])]
    assert first_epoch_order != second_epoch_order


def test_flips_are_seeded_per_epoch_and_index_and_look_right():
    batch = _take(_iterator(batch=96), 1)[0]
    perm, flips = pipeline.epoch_order(103, 5, pipeline.STREAM_HR, 0)
    ids = _ids(batch["hr"])
    assert [i for i, _ in ids] == list(perm[:96])
    assert [f for _, f in ids] == list(flips[perm[:96]])
    assert 20 < sum(f for _, f in ids) < 76
    k = [f for _, f in ids].index(True)
    np.testing.assert_array_equal(batch["hr"][k], HR[ids[k][0]][:, ::-1] / np.float32(255))
    no_flip = pipeline.make_iterator(HR, LR, global_batch_size=8, seed=5, random_flip=False,
                                     process_index=0, process_count=1)
    assert not any(f for b in _take(no_flip, 3) for k in ("hr", "lr") for _, f in _ids(b[k]))


def test_restoring_the_state_reproduces_the_following_batches():
    iterator = _iterator(batch=8)
    for _ in range(7):
        next(iterator)
    state = json.loads(json.dumps(iterator.get_state()))
    expected = _take(iterator, 10)
    for process_count, restored in ((1, _iterator(batch=8)),
                                    (2, _iterator(1, 2, batch=8, worker_count=0))):
        restored.set_state(state)
        got = _take(restored, 10)
        for g, e in zip(got, expected):
            local = 8 // process_count
            sl = slice(8 - local, 8)
            np.testing.assert_array_equal(g["hr"], e["hr"][sl])
            np.testing.assert_array_equal(g["lr"], e["lr"][sl])
    with pytest.raises(ValueError, match="does not match"):
        _iterator(seed=6).set_state(state)


def test_restore_with_worker_processes():
    expected = _take(_iterator(), 6)[3:]
    iterator = _iterator(worker_count=2)
    iterator.set_state({**iterator.get_state(), "step": 3})
    got = _take(iterator, 3)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g["hr"], e["hr"])
        np.testing.assert_array_equal(g["lr"], e["lr"])


@pytest.mark.parametrize("num_devices", [1, 4])
def test_shard_batch_splits_over_local_devices(num_devices):
    mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:num_devices])
    batch = _take(_iterator(batch=8), 1)[0]
    sharded = data.shard_batch(batch, mesh)
    assert sharded["hr"].shape == (8, 64, 64, 3) and sharded["lr"].shape == (8, 16, 16, 3)
    for key, size in (("hr", 64), ("lr", 16)):
        shards = sorted(sharded[key].addressable_shards, key=lambda s: s.index[0].start)
        assert len(shards) == num_devices
        for k, shard in enumerate(shards):
            assert shard.data.shape == (8 // num_devices, size, size, 3)
            np.testing.assert_array_equal(
                np.asarray(shard.data), batch[key][k * 8 // num_devices:(k + 1) * 8 // num_devices])


def test_shard_batch_refuses_uneven_batches():
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:4])
    with pytest.raises(ValueError, match="does not split over 4 local devices"):
        data.shard_batch({"hr": np.zeros((6, 2), np.float32)}, mesh)


def test_train_iterator_on_prepared_faces(faces_cfg, faces_dir):
    from PIL import Image

    cfg = faces_cfg.copy_and_resolve_references()
    cfg.random_flip = False
    for cache in (True, False):
        cfg.cache_decoded = cache
        iterator = data.make_train_iterator(cfg, global_batch_size=12, seed=1, process_index=1,
                                            process_count=3)
        assert iterator.steps_per_epoch == 900 // 12 and iterator.local_batch_size == 4
        batch = next(iterator)
        iterator.close()
        assert batch["hr"].dtype == np.float32 and batch["hr"].shape == (4, 64, 64, 3)
        assert batch["lr"].dtype == np.float32 and batch["lr"].shape == (4, 16, 16, 3)
        idx = pipeline.batch_indices(iterator.order, 0, 1, 3)
        names = sorted((faces_dir / "train" / "HIGH").glob("*.png"))
        expected = np.stack([np.asarray(Image.open(names[i])) for i in idx["hr"]]) / 255
        np.testing.assert_allclose(batch["hr"], expected, atol=1e-6)
