"""The default weights: TNet and SNet trained with the paper's recipe, shipped in the package.

`configs/teacher_student.py` trained on one NVIDIA H200 (2026-12-04) on 900 HR CelebA faces and
4,000 real low-resolution WIDER FACE faces (30 + 40 epochs: 1,680 + 9,000 steps, float32), both
nets exported from checkpoint 9000 and stored in float16 (loaded as float32). SNet beats bicubic
on the real-LR test set's FID and NIQE, the condition for shipping; the scores, the commands and
the training data's terms (non-commercial research) are in README.md beside these files. Each
file's SHA-256 is pinned here and checked before use: a damaged install is named, never run.
"""
from __future__ import annotations

import pathlib

from fsr_jax.metrics.weights.integrity import file_sha256
from fsr_jax.weights_file import WeightsError

FOLDER = pathlib.Path(__file__).parent
#: net -> SHA-256 of its shipped weights file, FOLDER/<net>.msgpack.
SHA256 = {
    "tnet": "459448c5cd8635f225cddc06d379806b9ac97792ddcc0375c8f7e9f0d70c2e15",
    "snet": "be1c845a5f9a7f2b2cb52908346e24afb2c5cc03e814167b8c66676bfc397cb7",
}
#: The word that names the shipped files where weights files are given (`eval.weights`).
NAME = "default"
REINSTALL = "reinstall fsr_jax (pip install -e .), or give weights files of your own"


def path(net: str) -> pathlib.Path:
    """The shipped weights file of `net` ('tnet' or 'snet'), its SHA-256 checked.

    Raises:
      ValueError: for another net.
      WeightsError: naming the file, when it is missing, unreadable or not the shipped one.
    """
    if net not in SHA256:
        raise ValueError(f"no default weights for {net!r}; there are {sorted(SHA256)}")
    file = FOLDER / f"{net}.msgpack"
    try:
        digest = file_sha256(file)
    except OSError as err:
        raise WeightsError(f"the default {net} weights {file} cannot be read ({err.strerror}); {REINSTALL}") from err
    if digest != SHA256[net]:
        raise WeightsError(f"the default {net} weights {file} have SHA-256 {digest}, not the shipped file's "
                           f"{SHA256[net]}; {REINSTALL}")
    return file


def describe(net: str) -> str:
    """One line for a user: which weights run, what they are and under which terms."""
    return (f"{net}: the default weights ({FOLDER / f'{net}.msgpack'}; the paper's recipe on CelebA and "
            f"WIDER FACE faces, for non-commercial research: {FOLDER / 'README.md'})")
