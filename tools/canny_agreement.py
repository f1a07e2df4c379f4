"""How far the device Canny (`edges.canny_jax`) agrees with `cv2.Canny`, on this machine's
default JAX device: run it once on a new accelerator or JAX version before trusting its edges.

    python tools/canny_agreement.py --hr_dir F/test/celeba/HR --lr_dir F/test/widerface/LR
        [--count 64] [--output agreement.json]

Images: the first `count` PNGs of --hr_dir as they are, of --lr_dir bicubic-upsampled to the HR
size (the SR nets' first input), and `count` uniform-noise images; each at thresholds 50/150
(the paper's) and 20/60. Prints (and writes with --output) JSON: per set and thresholds, the share
of equal pixels and of identical maps; the device and the JAX version.
"""
from __future__ import annotations

import json
import pathlib

import cv2
import jax
import numpy as np
from absl import flags

from fsr_jax import cli, edges
from fsr_jax.data.images import read_image, resize_bicubic

THRESHOLDS = ((50.0, 150.0), (20.0, 60.0))


def read_folder(folder: str, count: int, size: int | None) -> np.ndarray:
    """The first `count` images of `folder` (sorted by name), bicubic-resized to `size` when
    given, as float32 (N, H, W, 3) in [0, 1]."""
    paths = sorted(pathlib.Path(folder).glob("*.png"))[:count]
    if not paths:
        raise SystemExit(f"canny_agreement: no PNG in {folder}")
    pixels = [read_image(p).pixels for p in paths]
    if size:
        pixels = [resize_bicubic(p, size) for p in pixels]
    return np.stack(pixels).astype(np.float32) / 255.0


def agreement(images: np.ndarray, low: float, high: float) -> dict:
    """Equal-pixel share and identical-map share of the device Canny vs cv2.Canny of the images
    quantised on the host."""
    ours = np.asarray(jax.jit(edges.canny, static_argnums=(1, 2, 3))(images, low, high, "jax"))
    quantised = np.round(np.float32(255.0) * np.clip(images, 0, 1)).astype(np.uint8)
    reference = np.stack([cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), low, high, apertureSize=3,
                                    L2gradient=False) > 0 for im in quantised])[..., None]
    equal = (ours > 0) == reference
    return {"images": len(images), "pixels_equal": float(equal.mean()),
            "maps_identical": float(equal.reshape(len(equal), -1).all(axis=1).mean())}


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("hr_dir", None, "Folder of HR face PNGs (taken as they are).", flag_values=fv)
    flags.DEFINE_string("lr_dir", None, "Folder of LR face PNGs (bicubic-upsampled to the HR size).",
                        flag_values=fv)
    flags.DEFINE_integer("count", 64, "Images per set.", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("output", None, "Also write the JSON report here.", flag_values=fv)
    flags.mark_flags_as_required(["hr_dir", "lr_dir"], flag_values=fv)


def run(args: flags.FlagValues, positional: list[str]) -> None:
    del positional
    hr = read_folder(args.hr_dir, args.count, None)
    sets = {"hr": hr, "lr_bicubic": read_folder(args.lr_dir, args.count, hr.shape[1]),
            "noise": np.random.default_rng(0).uniform(0, 1, hr.shape).astype(np.float32)}
    report = {"device": str(jax.devices()[0]), "jax": jax.__version__,
              "results": {f"{name}/{low:g}-{high:g}": agreement(images, low, high)
                          for name, images in sets.items() for low, high in THRESHOLDS}}
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        pathlib.Path(args.output).write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv)


if __name__ == "__main__":
    main()
