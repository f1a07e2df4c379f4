"""Face data: TFDS datasets of the user's folders or the synthetic default, and the pipeline.

Public API (grain and TFDS are imported on first use of these functions, not by this package):
- `default_config()`: the `data` ConfigDict.
- `add_test_sets(data_cfg, ['NAME=FOLDER', ...])`: test sets from the command line.
- `make_train_iterator(data_cfg, *, global_batch_size, seed, process_index=None,
  process_count=None)`: resumable iterator of {'hr': float32 (L, 64, 64, 3), 'lr': float32
  (L, 16, 16, 3)} in [0, 1], with `steps_per_epoch`, `get_state()`, `set_state()`.
- `shard_batch(batch, mesh)`: global jax.Arrays split on mesh axis 'data'.
- `load_test_set(data_cfg, name, max_images=None)`: {'lr', 'hr' or None, 'names'} (uint8).
- `test_set_names(data_cfg)`: the test sets to evaluate.
- `prepare_all(data_cfg)`: prepare every dataset of the config ahead of time.
"""
import importlib

from fsr_jax.data.config import add_test_sets, default_config

# Imported on first use, so that `default_config` (and the model-only code paths: benchmarks,
# inference on accelerator hosts) need neither TFDS nor grain.
_LAZY = {"make_train_iterator": "pipeline", "shard_batch": "pipeline", "TrainIterator": "pipeline",
         "load_test_set": "datasets", "test_set_names": "datasets", "prepare_all": "datasets",
         "uses_synthetic": "datasets"}

__all__ = ["add_test_sets", "default_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"fsr_jax.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
