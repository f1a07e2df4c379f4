"""Fills the metric weight cache ahead of time: every archive, kept file and converted file.

Run by `python -m fsr_jax.metrics.weights install` (see `__main__.py`), for CI and for machines
that will be offline. The converted files of the Flax models are checked against the models'
parameter shapes as they are written.
"""
from __future__ import annotations

import functools
import pathlib
import shutil
from typing import Callable, TypeVar

from fsr_jax.metrics import inception, perceptual
from fsr_jax.metrics.weights import cache, pins
from fsr_jax.metrics.weights.cache import AbstractParams, Log
from fsr_jax.metrics.weights.errors import WeightsHashError
from fsr_jax.models import mtcnn

T = TypeVar("T")

# The Flax model each converted file is for (NIQE's parameters are no model's).
MODELS: dict[str, AbstractParams] = {
    pins.LPIPS_FILE: perceptual.abstract_params,
    pins.INCEPTION_FILE: inception.abstract_params,
    **{name: functools.partial(mtcnn.abstract_params, net) for net, name in pins.MTCNN_FILES.items()},
}


def _rebuilt(path: pathlib.Path, make: Callable[[], T], log: Log) -> T:
    """`make()`; when it finds `path` damaged (WeightsHashError), `path` is removed, named in one
    line, and made again."""
    try:
        return make()
    except WeightsHashError as err:
        log(f"damaged   {path} ({str(err).split(';')[0].removeprefix(str(path)).strip()}); rebuilding it")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return make()


def install(log: Log = print) -> pathlib.Path:
    """Fetches, verifies, extracts and converts every metric weight into `cache.cache_dir()`; returns it.

    Idempotent: what is present is verified, not fetched again; a damaged file (an archive,
    kept file or converted file that does not read or has another hash) is named, removed and
    made again from its source.
    """
    root = cache.cache_dir()
    log(f"metric weight cache: {root}")
    for archive in pins.ARCHIVES:
        download = root / "downloads" / archive.filename
        present = download.is_file()
        if not present:
            cache.announce(archive, download, root, log)
        path = _rebuilt(download, lambda a=archive: cache.archive_file(a, root, log), log)
        log(f"{'verified ' if present else 'fetched  '} {path}")
    for relpath in pins.KEPT:
        kept = root / "reference" / cache.pin_of(relpath)[0]
        log(f"verified  {_rebuilt(kept, lambda r=relpath: cache.reference(r, root, log), log)}")
    for output in pins.OUTPUTS:
        target = root / output.name

        def verified_or_built(output=output, target=target):
            if not target.is_file():
                return cache.build(output, root, log, MODELS.get(output.name))
            cache.read_npz(str(target), output.sha256)
            log(f"verified  {target}")
            return target

        _rebuilt(target, verified_or_built, log)
    log("metric weights ready")
    return root
