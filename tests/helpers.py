"""Small shared test utilities: reading the real faces, the golden reference outputs, and plain
numpy references of the projection layers."""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"

FACES_ENV = "FSR_JAX_TEST_FACES"
FACES_DEFAULT = REPO.parent / "shared" / "data" / "faces"
FACES_LAYOUT = ("train/HIGH", "train/LOW", "test/celeba/HR", "test/celeba/LR", "test/widerface/LR")
FACES_HINT = (
    f"set {FACES_ENV} to a folder holding train/HIGH (64x64 HR face PNGs) and train/LOW (16x16 "
    "real low-resolution face PNGs), a few hundred each, test/celeba/HR + test/celeba/LR (16 or "
    "more pairs, LR the PIL-bicubic 16x16 of HR, same file names) and test/widerface/LR (16x16 "
    "real low-resolution face PNGs); the default is ../shared/data/faces beside the checkout"
)


def faces_root() -> pathlib.Path:
    """The real face folder: $FSR_JAX_TEST_FACES (relative to the working directory), or
    ../shared/data/faces beside the checkout."""
    value = os.environ.get(FACES_ENV)
    return pathlib.Path(value).expanduser().resolve() if value else FACES_DEFAULT


def require_faces() -> pathlib.Path:
    """faces_root(), or a pytest skip naming the variable and what the folder must hold."""
    root = faces_root()
    missing = [sub for sub in FACES_LAYOUT if not (root / sub).is_dir()]
    if missing:
        what = "does not exist" if not root.is_dir() else f"lacks {', '.join(missing)}"
        pytest.skip(f"needs the real face set: {root} {what}; {FACES_HINT}")
    return root


def face_files(folder: pathlib.Path, count: int) -> list[pathlib.Path]:
    """The first `count` PNGs of `folder` by name; a skip with the hint when it holds fewer."""
    paths = sorted(folder.glob("*.png"))[:count]
    if len(paths) < count:
        pytest.skip(f"needs {count} PNGs in {folder}, found {len(paths)}; {FACES_HINT}")
    return paths


def read_faces(folder: pathlib.Path, count: int) -> np.ndarray:
    """The first `count` PNGs of `folder` (sorted by name) as float32 (count, H, W, 3) in [0, 1]."""
    return np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0
                     for p in face_files(folder, count)])


def load_golden(name: str) -> dict[str, np.ndarray]:
    """tests/golden/<name>.npz: reference outputs written by tools/make_goldens.py."""
    path = GOLDEN / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it is part of the repository "
                                "(regenerate with tools/make_goldens.py, see its docstring)")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def conv_transpose_reference(x, flipped_kernel, bias, stride, padding):
    """A transposed conv as torch's ConvTranspose2d defines it, by a plain scatter loop.

    x (B, H, W, C); flipped_kernel (k, k, C, F), torch's weight (C, F, k, k) laid out HWIO.
    Input pixel (i, j) adds x[i, j] @ flipped_kernel[u, v] to output (stride*i + u, stride*j + v)
    of the uncropped output, and `padding` rows and columns are then cut from each border.
    """
    x, w = np.asarray(x, np.float64), np.asarray(flipped_kernel, np.float64)
    (b, h, wd, _), k = x.shape, w.shape[0]
    full = np.zeros((b, stride * (h - 1) + k, stride * (wd - 1) + k, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            for u in range(k):
                for v in range(k):
                    full[:, stride * i + u, stride * j + v] += x[:, i, j] @ w[u, v]
    out = full[:, padding:full.shape[1] - padding, padding:full.shape[2] - padding]
    return out + np.asarray(bias, np.float64)


def conv_reference(x, kernel, bias, stride, padding):
    """A strided conv (cross-correlation, zero padding) as torch's Conv2d and flax's nn.Conv
    define it, by a plain loop: output (i, j) = sum over u, v of x_pad[stride*i + u, stride*j + v] @ kernel[u, v].

    x (B, H, W, C); kernel (k, k, C, F).
    """
    x, w = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    k = w.shape[0]
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oh, ow = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, stride * i:stride * i + k, stride * j:stride * j + k]  # (B, k, k, C)
            out[:, i, j] = np.einsum("buvc,uvcf->bf", patch, w)
    return out + np.asarray(bias, np.float64)


#: The stages' names, which are also their folders in a workdir.
STAGE1, STAGE2 = "degradation", "teacher_student"
