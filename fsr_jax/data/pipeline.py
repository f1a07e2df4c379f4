"""The training input pipeline: unpaired HR and LR streams, sharded by process, resumable.

Order (independent of the number of processes, so 1 x 4 devices and 2 x 2 devices see the
same global batches):
- HR: an epoch is one pass over the HR set in a permutation drawn from (seed, epoch); global
  batch t of the epoch holds permutation positions [t*G, (t+1)*G); the last partial batch of
  every epoch is dropped (**Decision**). Process p of P reads positions
  [t*G + p*L, t*G + (p+1)*L), L = G / P.
- LR: its own stream that simply cycles: global sample q (= step*G + position) is position
  q mod N_lr of the LR permutation of LR-epoch q // N_lr (**Decision**: the LR set is
  unpaired and of a different size, so it follows the HR epochs rather than defining them).
- Flips: horizontal, drawn per (stream, epoch, example index) from the seed.

Batches are assembled by grain (`MapDataset` over global step numbers, threads and optional
worker processes, prefetching) from the decoded uint8 faces (cached in memory) or straight
from the array_record data sources. The iterator state is the next step number and the few
numbers that define the order: JSON-serialisable, for the training checkpoint.
"""
from __future__ import annotations

import dataclasses
import sys

import grain
import jax
import numpy as np
from absl import flags, logging
from jax.sharding import NamedSharding, PartitionSpec

from fsr_jax.data.images import DataError

STREAM_HR, STREAM_LR = 0, 1


@dataclasses.dataclass(frozen=True)
class Order:
    """What fixes the sequence of global batches.

    Attributes:
      num_hr, num_lr: sizes of the HR and LR sets.
      global_batch_size: G, examples per step over all processes.
      seed: the training seed.
      random_flip: whether flips are drawn.
    """

    num_hr: int
    num_lr: int
    global_batch_size: int
    seed: int
    random_flip: bool

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches in one pass over the HR set."""
        return self.num_hr // self.global_batch_size


def epoch_order(n: int, seed: int, stream: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(permutation int64 (n,), flips bool (n,)) of one stream's epoch; flips[i] is example i's."""
    perm = np.random.default_rng([seed, stream, epoch, 0]).permutation(n)
    flips = np.random.default_rng([seed, stream, epoch, 1]).random(n) < 0.5
    return perm, flips


def batch_indices(order: Order, step: int, process_index: int,
                  process_count: int) -> dict[str, np.ndarray]:
    """Example indices and flips of one process's slice of global batch `step`.

    Returns:
      {'hr': int64 (L,), 'hr_flip': bool (L,), 'lr': int64 (L,), 'lr_flip': bool (L,)},
      L = global_batch_size // process_count.
    """
    local = order.global_batch_size // process_count
    offsets = process_index * local + np.arange(local)
    epoch, t = divmod(step, order.steps_per_epoch)
    perm, flips = epoch_order(order.num_hr, order.seed, STREAM_HR, epoch)
    hr = perm[t * order.global_batch_size + offsets]
    q = step * order.global_batch_size + offsets
    lr_epochs, positions = np.divmod(q, order.num_lr)
    lr, lr_flip = np.empty(local, np.int64), np.empty(local, bool)
    for e in np.unique(lr_epochs):
        lr_perm, lr_flips = epoch_order(order.num_lr, order.seed, STREAM_LR, int(e))
        mask = lr_epochs == e
        lr[mask] = lr_perm[positions[mask]]
        lr_flip[mask] = lr_flips[lr[mask]]
    hr_flip = flips[hr]
    if not order.random_flip:
        hr_flip, lr_flip = np.zeros_like(hr_flip), np.zeros_like(lr_flip)
    return {"hr": hr, "hr_flip": hr_flip, "lr": lr, "lr_flip": lr_flip}


def _gather(faces, indices: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """float32 (L, S, S, 3) in [0, 1]: faces[indices], flipped left-right where `flips`.

    `faces` is a uint8 (N, S, S, 3) array or a TFDS data source of {'image': ...} records.
    """
    if isinstance(faces, np.ndarray):
        batch = faces[indices]
    else:
        batch = np.stack([r["image"] for r in faces.__getitems__(indices.tolist())])
    batch = np.where(flips[:, None, None, None], batch[:, :, ::-1], batch)
    return batch.astype(np.float32) / np.float32(255)


class _BatchMaker:
    """grain map: global step number -> this process's batch dict (picklable)."""

    def __init__(self, order: Order, hr, lr, process_index: int, process_count: int):
        self._order, self._hr, self._lr = order, hr, lr
        self._process = (process_index, process_count)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        idx = batch_indices(self._order, int(step), *self._process)
        return {"hr": _gather(self._hr, idx["hr"], idx["hr_flip"]),
                "lr": _gather(self._lr, idx["lr"], idx["lr_flip"])}


class TrainIterator:
    """Endless iterator of this process's training batches.

    Yields {'hr': float32 (L, hr_size, hr_size, 3), 'lr': float32 (L, lr_size, lr_size, 3)},
    both in [0, 1], L = local_batch_size = global_batch_size // process_count; HR and LR are
    unpaired. `get_state()` / `set_state()` save and restore the position exactly.
    """

    def __init__(self, order: Order, hr, lr, *, process_index: int, process_count: int,
                 read_threads: int, prefetch: int, worker_count: int):
        self.order = order
        self.process_index, self.process_count = process_index, process_count
        self._maker = _BatchMaker(order, hr, lr, process_index, process_count)
        self._options = (read_threads, prefetch, worker_count)
        self._step = 0
        self._iterator = self._start(0)

    @property
    def steps_per_epoch(self) -> int:
        return self.order.steps_per_epoch

    @property
    def global_batch_size(self) -> int:
        return self.order.global_batch_size

    @property
    def local_batch_size(self) -> int:
        return self.order.global_batch_size // self.process_count

    @property
    def step(self) -> int:
        """Number of the next batch (0-based, counted over all epochs)."""
        return self._step

    def _start(self, step: int):
        read_threads, prefetch, worker_count = self._options
        dataset = grain.MapDataset.range(step, sys.maxsize // 2).map(self._maker)
        dataset = dataset.to_iter_dataset(
            grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch))
        if worker_count:
            if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults suffice)
                flags.FLAGS.mark_as_parsed()
            dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
        return iter(dataset)

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._iterator)
        self._step += 1
        return batch

    def get_state(self) -> dict:
        """JSON-serialisable position: the next step and the numbers that fix the order."""
        return {"step": self._step, **dataclasses.asdict(self.order)}

    def set_state(self, state: dict) -> None:
        """Continues from a `get_state()` result (of any process count).

        Raises:
          ValueError: when the state belongs to another data set, batch size, seed or flips.
        """
        expected = dataclasses.asdict(self.order)
        saved = {k: state[k] for k in expected if k in state}
        if saved != expected:
            raise ValueError(f"iterator state {saved} does not match this pipeline {expected}")
        self.close()
        self._step = int(state["step"])
        self._iterator = self._start(self._step)

    def close(self) -> None:
        """Stops prefetching threads and worker processes."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


def make_iterator(hr, lr, *, global_batch_size: int, seed: int, random_flip: bool,
                  process_index: int, process_count: int, read_threads: int = 2,
                  prefetch: int = 4, worker_count: int = 0) -> TrainIterator:
    """A `TrainIterator` over given faces (uint8 (N, S, S, 3) arrays or TFDS data sources).

    Raises:
      ValueError: when the batch does not split over processes or exceeds the HR set.
    """
    if global_batch_size % process_count:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                         f"{process_count} processes")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    order = Order(num_hr=len(hr), num_lr=len(lr), global_batch_size=global_batch_size,
                  seed=seed, random_flip=random_flip)
    if order.steps_per_epoch == 0:
        raise ValueError(f"global batch size {global_batch_size} exceeds the {len(hr)} HR faces")
    return TrainIterator(order, hr, lr, process_index=process_index,
                         process_count=process_count, read_threads=read_threads,
                         prefetch=prefetch, worker_count=worker_count)


def make_train_iterator(data_cfg, *, global_batch_size: int, seed: int,
                        process_index: int | None = None,
                        process_count: int | None = None) -> TrainIterator:
    """The training iterator of a `data` config (datasets prepared on first use).

    Args:
      data_cfg: the `data` ConfigDict (`fsr_jax.data.default_config()`).
      global_batch_size: examples per step over all processes.
      seed: the training seed; fixes permutations and flips.
      process_index, process_count: this process's slice; default jax.process_index() and
        jax.process_count().

    Returns:
      A `TrainIterator`; `steps_per_epoch` is the number of steps in one pass over HR.

    Raises:
      DataError: naming the folder, when it gives fewer HR faces than one batch.
    """
    from fsr_jax.data import datasets  # TFDS is only imported where data are read

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    hr_builder, lr_builder = datasets.train_builders(data_cfg)
    if data_cfg.cache_decoded:
        hr, _ = datasets.read_faces(hr_builder)
        lr, _ = datasets.read_faces(lr_builder)
        logging.info("decoded faces cached in memory: HR %s, LR %s (%.0f MB)", hr.shape,
                     lr.shape, (hr.nbytes + lr.nbytes) / 2**20)
    else:
        hr, lr = hr_builder.as_data_source("train"), lr_builder.as_data_source("train")
    if len(hr) < global_batch_size:
        where = data_cfg.hr_dir or "the synthetic HR set"
        raise DataError(f"{where} gives {len(hr)} usable HR faces, fewer than the batch size {global_batch_size}; "
                        f"add faces or lower the stage's batch_size")
    iterator = make_iterator(
        hr, lr, global_batch_size=global_batch_size, seed=seed,
        random_flip=data_cfg.random_flip, process_index=process_index,
        process_count=process_count, read_threads=data_cfg.read_threads,
        prefetch=data_cfg.prefetch, worker_count=data_cfg.worker_count)
    logging.info("training data: %d HR, %d LR faces; global batch %d (%d per process, process "
                 "%d of %d); %d steps per epoch (last partial batch dropped)",
                 len(hr), len(lr), global_batch_size, iterator.local_batch_size, process_index,
                 process_count, iterator.steps_per_epoch)
    return iterator


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh, stacked: bool = False) -> dict[str, jax.Array]:
    """Global jax.Arrays of this process's batch, split on the mesh axis 'data'.

    Each (L, ...) host array becomes a (L * process_count, ...) global array whose leading axis
    is split over the mesh's 'data' devices. With `stacked=True` the arrays are K batches
    stacked, (K, L, ...) -> (K, L * process_count, ...), split on their second axis.

    Raises:
      ValueError: when L does not split evenly over this process's devices of the mesh.
    """
    batch_axis = 1 if stacked else 0
    spec = PartitionSpec(*([None] * batch_axis), "data")
    sharding = NamedSharding(mesh, spec)
    local_devices = len(mesh.local_devices)
    out = {}
    for key, value in batch.items():
        if value.shape[batch_axis] % local_devices:
            raise ValueError(f"batch '{key}' of {value.shape[batch_axis]} examples does not split over "
                             f"{local_devices} local devices")
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out
