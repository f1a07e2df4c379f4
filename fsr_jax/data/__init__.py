"""Face data: TFDS datasets of the user's folders or the synthetic default, and the pipeline.

Public API (TFDS is imported on first use of the dataset functions, not by this package):
- `default_config()`: the `data` ConfigDict.
- `make_train_iterator(data_cfg, *, global_batch_size, seed, process_index=None,
  process_count=None)`: resumable iterator of {'hr': float32 (L, 64, 64, 3), 'lr': float32
  (L, 16, 16, 3)} in [0, 1], with `steps_per_epoch`, `get_state()`, `set_state()`.
- `shard_batch(batch, mesh)`: global jax.Arrays split on mesh axis 'data'.
- `load_test_set(data_cfg, name, max_images=None)`: {'lr', 'hr' or None, 'names'} (uint8).
- `test_set_names(data_cfg)`: the test sets to evaluate.
- `prepare_all(data_cfg)`: prepare every dataset of the config ahead of time.
"""
from fsr_jax.data.config import default_config
from fsr_jax.data.pipeline import TrainIterator, make_train_iterator, shard_batch

_LAZY = ("load_test_set", "test_set_names", "prepare_all", "uses_synthetic")

__all__ = ["default_config", "make_train_iterator", "shard_batch", "TrainIterator", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        from fsr_jax.data import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
