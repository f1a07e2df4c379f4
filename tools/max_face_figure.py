"""Why `super_resolve --max_face` leaves large faces as the photo has them: a picture and a table.

    python tools/max_face_figure.py --output docs/max_face_reason.png [--workdir W | --weights F]

A face of s px in a photo comes out of `--upscale 4` at 4s px, either as the photo has it
(PIL bicubic 4x), or shrunk to the network's 16-px input, super-resolved to 64 px and resized to
4s. Even a perfect 4x network can give back no more than the face at 64 px, so for this second
path the tool takes the true face at 64 px ("ideal SR") as well as, with --workdir or --weights,
a trained SNet. Each is compared with the true face drawn at 4s px (PSNR, mean over --faces
synthetic faces; no real face ships with the project): above some size the shrink costs more
than any SR can give back. The picture shows one face per row, at 96 px per column.
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np
from PIL import Image

from fsr_jax import grids
from fsr_jax.data import synthetic

SIZES = (16, 24, 32, 48, 64, 96)
LR, HR, PANEL = 16, 64, 96


def resize(face: np.ndarray, size: int, method=Image.BICUBIC) -> np.ndarray:
    return np.asarray(Image.fromarray(face).resize((size, size), method))


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """dB at data range 255; inf for equal images."""
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse else float("inf")


def paths(truth: np.ndarray, size: int, sr_fn) -> dict[str, np.ndarray]:
    """The 4s-px outputs of a face of `size` px whose true look at 4 x size px is `truth`."""
    photo = resize(truth, size, Image.BOX)                      # the face as the camera saw it
    out = {"photo face, bicubic 4x": resize(photo, 4 * size),
           "ideal SR of 16 px": resize(resize(truth, HR, Image.BOX), 4 * size)}
    if sr_fn is not None:
        out["SNet of 16 px"] = resize(sr_fn(resize(photo, LR)[None])[0], 4 * size)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--faces", type=int, default=40)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--workdir")
    source.add_argument("--weights")
    args = parser.parse_args()
    sr_fn = None
    if args.workdir or args.weights:
        from fsr_jax import inference  # noqa: PLC0415  (jax only when a network is asked for)
        trained = (inference.load_trained_sr(weights=[args.weights]) if args.weights
                   else inference.load_trained_sr(args.workdir, names=("snet",)))
        net = next(iter(trained.params))
        sr_fn = lambda lr: inference.super_resolve(trained.model, trained.params[net], lr, 64)  # noqa: E731
    scores: dict[int, dict[str, list[float]]] = {}
    rows = []
    for size in SIZES:
        scores[size] = {}
        for k in range(args.faces):
            truth = synthetic.hr_face(0, k, 4 * size, synthetic.STREAM_TEST_HR)
            outputs = paths(truth, size, sr_fn)
            for name, image in outputs.items():
                scores[size].setdefault(name, []).append(psnr(image, truth))
            if k == 0:
                rows.append([resize(truth, PANEL)] + [resize(image, PANEL) for image in outputs.values()])
    names = list(scores[SIZES[0]])
    print("| face in the photo | " + " | ".join(f"{n}, PSNR dB" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for size in SIZES:
        means = [np.mean(scores[size][n]) for n in names]
        print(f"| {size} px | " + " | ".join("exact" if np.isinf(m) else f"{m:.2f}" for m in means) + " |")
    columns = [np.stack([row[c] for row in rows]).astype(np.float32) / 255 for c in range(len(rows[0]))]
    titles = ["truth at 4x"] + [f"{n}" for n in names]
    grid = grids.titled_grid(columns, titles)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.output)
    print(f"rows: faces of {', '.join(str(s) for s in SIZES)} px; wrote {args.output}")


if __name__ == "__main__":
    main()
