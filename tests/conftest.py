"""Test-wide set-up: 4 forced CPU devices, JAX's persistent compilation cache, the shared faces.

XLA_FLAGS must be set before jax is first imported, so this runs at collection time.
"""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"

jax.config.update("jax_compilation_cache_dir", str(REPO / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def faces_dir() -> pathlib.Path:
    """The shared real face set (../shared/data/faces); its absence is an error, not a skip."""
    if not FACES.is_dir():
        raise FileNotFoundError(f"the shared face set is missing: expected {FACES}")
    return FACES
