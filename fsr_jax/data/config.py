"""The `data` section of every config: where faces come from and how they are fed."""
from __future__ import annotations

import os
import re

import ml_collections
from ml_collections import config_dict

# Where prepared datasets live unless data.tfds_dir says otherwise.
TFDS_DIR_ENV = "FSR_JAX_TFDS_DIR"
DEFAULT_TFDS_DIR = "~/.cache/fsr_jax/tfds"
# Allowed values of the policies (checked by `problems`).
ON_BAD_IMAGE = ("error", "skip")
ON_WRONG_SIZE = ("resize", "error")
# A test set's name becomes a folder name (W/eval/<name>) and a key of data.test_sets (which
# takes no '.'): one path component of these characters.
_TEST_SET_NAME = re.compile(r"[A-Za-z0-9_-]+")
TEST_SET_NAME_CHARS = "letters, digits, '_' and '-'"


#: The default bound on an image's pixels (width x height), checked before decoding.
MAX_IMAGE_PIXELS = 8192 * 8192

def default_tfds_dir() -> str:
    """$FSR_JAX_TFDS_DIR if set, else ~/.cache/fsr_jax/tfds (not expanded)."""
    return os.environ.get(TFDS_DIR_ENV, DEFAULT_TFDS_DIR)


def default_config() -> ml_collections.ConfigDict:
    """The `data` ConfigDict with every field at its default.

    hr_dir and lr_dir are typed placeholders (None), so `--config.data.hr_dir=PATH` works from
    the command line.
    """
    c = ml_collections.ConfigDict()
    # Folder of HR training faces (SCGAN's HIGH/); with lr_dir None too, training uses the
    # synthetic default set and the log says so. **Decision**: a generated default, so the main
    # job runs anywhere without a download.
    c.hr_dir = config_dict.placeholder(str)
    # Folder of real LR training faces (SCGAN's LOW/), unpaired with hr_dir; set both or neither.
    c.lr_dir = config_dict.placeholder(str)
    # Where the faces come from, a name in fsr_jax.data.datasets.SOURCES ('folders', 'synthetic',
    # or one registered there); '': the folders when hr_dir and lr_dir are set, else synthetic.
    c.source = ""
    # Where prepared (array_record) copies of the folders are written on first use and reused.
    c.tfds_dir = default_tfds_dir()
    # Test sets for evaluation: name -> folder holding LR/ and optionally HR/ (same file names);
    # empty on the synthetic default means the synthetic test sets. From the command line
    # (where this locked dict takes no new keys): --test_set=NAME=FOLDER, repeated.
    c.test_sets = ml_collections.ConfigDict()
    # 'error' stops before training listing every undecodable file; 'skip' drops and counts them.
    c.on_bad_image = "error"
    # 'resize' brings other sizes to hr_size / lr_size with PIL bicubic (counted in the log);
    # 'error' refuses them. **Decision**: resizing, since users bring faces of any size.
    c.on_wrong_size = "resize"
    # Images with more pixels (width x height) are bad images, refused before decoding (PIL
    # reads the size from the header): one decoded 15000x15000 file takes 675 MB, and faces are
    # a few hundred pixels wide. 8192 x 8192.
    c.max_image_pixels = MAX_IMAGE_PIXELS
    # Side of HR faces in pixels (the paper's 64).
    c.hr_size = 64
    # Side of LR faces in pixels (the paper's 16; scale = hr_size / lr_size).
    c.lr_size = 16
    # Random horizontal flips of HR and LR training faces, seeded per (epoch, example).
    # **Decision**: the paper states no augmentation; flips are the usual one for faces.
    c.random_flip = True
    # Number of synthetic HR training faces of the default set. The default set must hold at least
    # 2000 HR and 2000 LR training faces (tests/test_data_config.py checks both counts).
    c.synthetic_hr = 2000
    # Number of synthetic "real" LR training faces, drawn from seeds disjoint from the HR ones.
    c.synthetic_lr = 2000
    # Number of faces in each synthetic test set (bicubic pairs; degraded LR only).
    c.synthetic_test = 200
    # Seed of the synthetic faces (independent of the training seed, so data stay fixed).
    c.synthetic_seed = 0
    # Keep the decoded uint8 faces in memory (20k HR faces: ~245 MB) instead of decoding PNGs
    # from array_record on every step.
    c.cache_decoded = True
    # Grain worker processes assembling batches (0: threads of the training process only).
    c.worker_count = 0
    # Threads assembling batches in each process (grain ReadOptions.num_threads).
    c.read_threads = 2
    # Batches prepared ahead of the training step (grain ReadOptions.prefetch_buffer_size).
    c.prefetch = 4
    # Show progress bars while checking folders and preparing datasets.
    c.progress = True
    return c


def test_set_name_problem(name: str) -> str | None:
    """Why `name` cannot name a test set (it becomes a folder under W/eval), or None if it can."""
    if not _TEST_SET_NAME.fullmatch(name):
        return f"test set name {name!r}: use only {TEST_SET_NAME_CHARS} (it names a folder)"
    return None


def problems(data_cfg: ml_collections.ConfigDict) -> list[str]:
    """One line for each value of the `data` section that cannot work (empty when none)."""
    found = []
    if data_cfg.on_bad_image not in ON_BAD_IMAGE:
        found.append(f"data.on_bad_image must be one of {', '.join(map(repr, ON_BAD_IMAGE))}, "
                     f"got {data_cfg.on_bad_image!r}")
    if data_cfg.on_wrong_size not in ON_WRONG_SIZE:
        found.append(f"data.on_wrong_size must be one of {', '.join(map(repr, ON_WRONG_SIZE))},"
                     f" got {data_cfg.on_wrong_size!r}")
    if data_cfg.max_image_pixels <= 0:
        found.append(f"data.max_image_pixels must be positive, got {data_cfg.max_image_pixels}")
    for name in data_cfg.test_sets:
        problem = test_set_name_problem(name)
        if problem:
            found.append(problem)
    return found


def parse_test_sets(specs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """{name: folder} of command-line test sets given as 'NAME=FOLDER' strings.

    Raises:
      ValueError: naming the spec, when it has no '=', an empty name or folder, a name with
        other characters than letters, digits, '_' and '-', or a name given twice.
    """
    parsed = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise ValueError(f"test set {spec!r}: expected NAME=FOLDER, e.g. widerface=data/test/widerface")
        problem = test_set_name_problem(name)
        if problem:
            raise ValueError(problem)
        if name in parsed:
            raise ValueError(f"test set {name!r} is given twice")
        parsed[name] = folder
    return parsed


def add_test_sets(data_cfg: ml_collections.ConfigDict, specs: list[str] | tuple[str, ...]) -> None:
    """Adds the 'NAME=FOLDER' test sets of `specs` to `data_cfg.test_sets` (even when locked)."""
    with data_cfg.unlocked():
        data_cfg.test_sets.update(parse_test_sets(specs))
