"""Small shared test utilities: reading the shared real faces."""
from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image


def read_faces(folder: pathlib.Path, count: int) -> np.ndarray:
    """The first `count` PNGs of `folder` (sorted by name) as float32 (count, H, W, 3) in [0, 1]."""
    paths = sorted(folder.glob("*.png"))[:count]
    if len(paths) < count:
        raise FileNotFoundError(f"{folder} holds {len(paths)} PNGs, the test needs {count}")
    return np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0 for p in paths])
