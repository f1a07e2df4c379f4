"""Fills the metric weight cache ahead of time: every archive, kept file and converted file.

Run by `python -m fsr_jax.metrics.weights install` (see `__main__.py`), for CI and for machines
that will be offline. The converted files of the Flax models are checked against the models'
parameter shapes as they are written.
"""
from __future__ import annotations

import pathlib

from fsr_jax.metrics import inception, perceptual
from fsr_jax.metrics.weights import cache, pins
from fsr_jax.metrics.weights.cache import AbstractParams, Log

# The Flax model each converted file is for (NIQE's parameters are no model's).
MODELS: dict[str, AbstractParams] = {
    pins.LPIPS_FILE: perceptual.abstract_params,
    pins.INCEPTION_FILE: inception.abstract_params,
}


def install(log: Log = print) -> pathlib.Path:
    """Fetches, verifies, extracts and converts every metric weight into `cache.cache_dir()`; returns it.

    Idempotent: what is present is verified, not fetched again.
    """
    root = cache.cache_dir()
    log(f"metric weight cache: {root}")
    for archive in pins.ARCHIVES:
        present = (root / "downloads" / archive.filename).is_file()
        if not present:
            cache.announce(archive, root / "downloads" / archive.filename, root, log)
        path = cache.archive_file(archive, root, log)
        log(f"{'verified ' if present else 'fetched  '} {path}")
    for relpath in pins.KEPT:
        log(f"verified  {cache.reference(relpath, root, log)}")
    for output in pins.OUTPUTS:
        target = root / output.name
        if target.is_file():
            cache.read_npz(str(target), output.sha256)
            log(f"verified  {target}")
        else:
            cache.build(output, root, log, MODELS.get(output.name))
    log("metric weights ready")
    return root
