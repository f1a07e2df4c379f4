"""The README's whole-photo picture: synthetic faces in a "group photo", super-resolved in place.

  python tools/example_photo.py --workdir W --output docs/super_resolve_example.png

No real face may ship with the project, so the photo is drawn from the package's synthetic
faces (test stream). OpenCV's Haar cascade is trained on real faces and rarely finds these
cartoon ones, so the faces' boxes are given (as `super_resolve.py --boxes` takes them) instead
of detected. The picture stacks: the photo (enlarged 4x by pixel repetition), PIL bicubic 4x,
and the result with every face super-resolved and blended back. The photo and its boxes.json
are written beside the picture, so `super_resolve.py --boxes` reproduces the result.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from fsr_jax import checkpointing, cli, inference, photos
from fsr_jax.data import synthetic

SIZES = (22, 26, 30, 24, 28)   # face sides in the photo, pixels (about the cascade's lower limit)
HEIGHT, WIDTH, GAP = 56, 200, 8


def group_photo(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (HEIGHT, WIDTH, 3) photo of synthetic faces on a gradient, float (K, 4) boxes)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    background = np.stack([60 + x * 0.6, 90 + y * 1.5, 140 - x * 0.3], axis=-1)
    photo = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    boxes, left = [], GAP
    for i, size in enumerate(SIZES):
        face = synthetic.draw_face(synthetic.face_rng(seed, synthetic.STREAM_TEST_HR, i), 64)
        top = (HEIGHT - size) // 2 + (6 if i % 2 else -6)
        photo.paste(Image.fromarray(face).resize((size, size), Image.BICUBIC), (left, top))
        # The face's own box as a detector would give it: the inner part of the aligned crop.
        inner = size / photos.MARGIN
        boxes.append((left + (size - inner) / 2, top + (size - inner) / 2, inner, inner))
        left += size + GAP
    return np.asarray(photo), np.array(boxes)


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """The image with a caption strip above it."""
    strip = Image.new("RGB", (image.shape[1], 14), (255, 255, 255))
    ImageDraw.Draw(strip).text((4, 1), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), image])


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("workdir", None, "A trained run.", flag_values=fv)
    flags.DEFINE_string("output", None, "The picture (PNG); its photo and boxes.json go beside it.",
                        flag_values=fv)
    flags.DEFINE_enum("net", "snet", inference.SR_NETS, "SR network.", flag_values=fv)
    flags.mark_flags_as_required(["workdir", "output"], flag_values=fv)


def run(args: flags.FlagValues, positional: list[str]) -> int:
    del positional
    output = pathlib.Path(args.output)
    try:
        trained = inference.load_trained_sr(args.workdir, names=(args.net,))
    except checkpointing.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    model, params, step, scale = trained.model, trained.params[args.net], trained.step, trained.model.scale
    photo, boxes = group_photo()
    result = photos.super_resolve_photo(
        photo, lambda lr: inference.super_resolve(model, params, lr), trained.lr_size, scale, boxes=boxes)
    nearest = np.asarray(Image.fromarray(photo).resize((scale * WIDTH, scale * HEIGHT), Image.NEAREST))
    picture = np.concatenate([
        labelled(nearest, f"input photo ({WIDTH}x{HEIGHT}, faces {min(SIZES)}-{max(SIZES)} px), shown 4x"),
        labelled(photos.upscale(photo, scale), "PIL bicubic 4x"),
        labelled(result.image, f"faces super-resolved by {args.net} (checkpoint {step}), given boxes, "
                               "feathered paste-back")])
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(output)
    stem = output.with_suffix("")
    Image.fromarray(photo).save(f"{stem}_input.png")
    pathlib.Path(f"{stem}_boxes.json").write_text(json.dumps({f"{stem.name}_input.png": {"faces": boxes.tolist()}}))
    print(f"wrote {output}, {stem}_input.png and {stem}_boxes.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv)


if __name__ == "__main__":
    main()
