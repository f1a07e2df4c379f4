"""Test-wide set-up: 4 forced CPU devices, JAX's persistent compilation cache, the real faces.

XLA_FLAGS must be set before jax is first imported, so this runs at collection time.

The real faces live outside the repository: $FSR_JAX_TEST_FACES, by default ../shared/data/faces
beside the checkout (see helpers.FACES_HINT for what the folder must hold). Every test that reads
them goes through the `faces_dir` fixture and is skipped, with that hint, when they are absent.
"""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Commands the tests start import this checkout's fsr_jax and configs too, wherever they run (an
# installed fsr_jax, e.g. the editable install of another checkout, would otherwise be tested).
_REPO = str(pathlib.Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([_REPO, *filter(None, [os.environ.get("PYTHONPATH")])])

import jax  # noqa: E402
import pytest  # noqa: E402

from helpers import REPO, face_files, require_faces  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(REPO / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def faces_dir() -> pathlib.Path:
    """The real face set ($FSR_JAX_TEST_FACES or ../shared/data/faces); a skip naming the
    variable and the folder's expected layout when it is absent."""
    return require_faces()


@pytest.fixture(scope="session")
def load_faces(faces_dir):
    """load_faces(subdir, n, size=None) -> (n, H, W, 3) uint8 RGB: the first n PNGs of
    faces_dir/subdir in name order, optionally resized to size x size with PIL bicubic."""
    import numpy as np
    from PIL import Image

    def load(subdir: str, n: int, size: int | None = None):
        images = [Image.open(f).convert("RGB") for f in face_files(faces_dir / subdir, n)]
        if size is not None:
            images = [im.resize((size, size), Image.BICUBIC) for im in images]
        return np.stack([np.asarray(im) for im in images])

    return load


@pytest.fixture(scope="session")
def faces_cfg(tmp_path_factory, faces_dir):
    """A `data` config over the shared faces, prepared once per session into a temporary
    tfds_dir (HR = train/HIGH, LR = train/LOW, test sets celeba and widerface)."""
    from fsr_jax import data

    cfg = data.default_config()
    cfg.tfds_dir = str(tmp_path_factory.mktemp("tfds"))
    cfg.hr_dir = str(faces_dir / "train" / "HIGH")
    cfg.lr_dir = str(faces_dir / "train" / "LOW")
    cfg.test_sets.celeba = str(faces_dir / "test" / "celeba")
    cfg.test_sets.widerface = str(faces_dir / "test" / "widerface")
    cfg.progress = False
    data.prepare_all(cfg)
    return cfg


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, faces_cfg):
    """A workdir trained by configs/smoke.py on the shared faces for 2 + 2 steps: W/degradation
    and W/teacher_student with one checkpoint (step 2) and config.json each."""
    from configs import smoke
    from fsr_jax import train

    config = smoke.get_config()
    config.data = faces_cfg.copy_and_resolve_references()
    config.degradation.max_steps, config.teacher_student.max_steps = 2, 2
    config.train.update(images_every=1000, checkpoint_every=1000)
    workdir = tmp_path_factory.mktemp("smoke_run")
    train.train_and_evaluate(config, str(workdir))
    return workdir


@pytest.fixture(scope="session")
def smoke_tfds_dir(tmp_path_factory):
    """A tfds_dir holding the smoke config's synthetic faces, prepared once per session."""
    from configs import smoke
    from fsr_jax import data

    cfg = smoke.get_config().data
    cfg.tfds_dir = str(tmp_path_factory.mktemp("smoke_tfds"))
    cfg.progress = False
    data.prepare_all(cfg)
    return cfg.tfds_dir


@pytest.fixture
def subprocess_env():
    """Environment for `python -m fsr_jax.main` subprocesses: CPU, this session's JAX cache."""
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "JAX_COMPILATION_CACHE_DIR": str(REPO / ".jax_cache")}
