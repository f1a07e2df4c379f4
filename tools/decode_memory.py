"""Peak memory of decoding one large image with `fsr_jax.data.images.read_image`.

    python tools/decode_memory.py [--side 8000] [--kinds rgba8,rgba16,rgb8]

For each kind, writes a side x side PNG (a smooth pattern, so the file is small, like the
image-bomb a careless user might feed), decodes it in a fresh interpreter and prints JSON: the
file size, the peak resident memory the decoding added (ru_maxrss after minus before), and
that figure per pixel beside the decoded uint8 RGB image's 3 bytes per pixel.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

import cv2
import numpy as np
from absl import app, flags

KINDS = {"rgba8": (4, np.uint8), "rgba16": (4, np.uint16), "rgb8": (3, np.uint8)}
_SIDE = flags.DEFINE_integer("side", 8000, "Image side in pixels.")
_KINDS = flags.DEFINE_list("kinds", list(KINDS), f"Kinds of image, of {list(KINDS)}.")

CHILD = """
import resource, sys, time
from fsr_jax.data import images
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
pixels = images.read_image(sys.argv[1], max_pixels=1 << 40).pixels
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, seconds, pixels.shape)
"""


def write_image(path: pathlib.Path, side: int, channels: int, dtype) -> None:
    """A side x side PNG of a smooth pattern with `channels` channels of `dtype` (BGR(A) for OpenCV)."""
    top = np.iinfo(dtype).max
    ramp = (np.arange(side, dtype=np.float64) * (top / max(side - 1, 1))).astype(dtype)
    image = np.empty((side, side, channels), dtype)
    image[...] = ramp[None, :, None]
    if channels == 4:
        image[..., 3] = top // 2
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def measure(kind: str, side: int) -> dict:
    """{kind, side, file_bytes, peak_added_bytes, per_pixel, seconds} of decoding one image."""
    channels, dtype = KINDS[kind]
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / f"{kind}.png"
        write_image(path, side, channels, dtype)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
        added_kb, seconds, _ = out.stdout.split(maxsplit=2)
        added = int(added_kb) * 1024
        return {"kind": kind, "side": side, "file_bytes": path.stat().st_size, "peak_added_bytes": added,
                "per_pixel": round(added / side**2, 2), "seconds": round(float(seconds), 2)}


def main(argv) -> None:
    del argv
    for kind in _KINDS.value:
        print(json.dumps(measure(kind, _SIDE.value)), flush=True)


if __name__ == "__main__":
    app.run(main)
