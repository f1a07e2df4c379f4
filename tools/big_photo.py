"""A large test photo for the memory and time figures of `super_resolve --detect` (BENCHMARKS.md):
a smooth colour gradient with pixel noise, and six face crops pasted at 80 to 400 px.

  python tools/big_photo.py --side 5000 --faces ../shared/data/faces/test/celeba/HR --output photo5000.png

The faces are the first six images of --faces (sorted by name); no face ships with the project.
"""
from __future__ import annotations

import sys

import numpy as np
from absl import app, flags
from PIL import Image

from fsr_jax.data import images

SIDES = (80, 120, 160, 240, 320, 400)   # pasted face sides, pixels

flags.DEFINE_integer("side", 5000, "Width and height of the photo, pixels (at least 3000).", lower_bound=3000)
flags.DEFINE_string("faces", None, "Folder of face images; the first six are pasted.", required=True)
flags.DEFINE_string("output", None, "PNG file to write.", required=True)
FLAGS = flags.FLAGS


def background(side: int, seed: int = 0) -> np.ndarray:
    """uint8 (side, side, 3): a gradient from blue-grey to warm, plus Gaussian noise (sigma 6)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    pixels = np.stack([80 + 100 * x, 90 + 80 * y, 140 - 60 * x], axis=-1)
    pixels += np.random.default_rng(seed).normal(0, 6, pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def main(argv):
    del argv
    try:
        faces = images.list_folder(FLAGS.faces).images[:len(SIDES)]
    except images.DataError as err:
        sys.exit(str(err))
    if len(faces) < len(SIDES):
        sys.exit(f"--faces {FLAGS.faces}: {len(faces)} images, {len(SIDES)} needed")
    photo = Image.fromarray(background(FLAGS.side))
    for i, (path, side) in enumerate(zip(faces, SIDES)):
        face = Image.fromarray(images.read_image(path).pixels).resize((side, side), Image.BICUBIC)
        photo.paste(face, (200 + i * (FLAGS.side // 7), FLAGS.side // 3 + (i % 2) * FLAGS.side // 4))
    photo.save(FLAGS.output)
    print(f"{FLAGS.output}: {FLAGS.side}x{FLAGS.side}, {len(faces)} faces from {FLAGS.faces}")


if __name__ == "__main__":
    app.run(main)
