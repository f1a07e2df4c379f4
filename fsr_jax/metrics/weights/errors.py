"""The errors of the metric weight cache, and the command that fills the cache ahead of time."""
from __future__ import annotations

from fsr_jax.errors import FsrJaxError

INSTALL_COMMAND = "python -m fsr_jax.metrics.weights install"


class MissingWeightsError(FsrJaxError, FileNotFoundError):
    """A metric's weights (or a parity test's reference file) are not in the cache and could not
    be fetched now: fetching is switched off, or the package index is out of reach."""


class WeightsHashError(MissingWeightsError):
    """A file of the cache (or one just fetched) does not have its pinned SHA-256; it is not used."""
