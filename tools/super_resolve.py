"""Super-resolve face crops, folders of them, or the faces in whole photos with a trained run
or exported weights.

  python tools/super_resolve.py --workdir W --input face.png --output out/
  python tools/super_resolve.py --weights snet.msgpack --input face.png --output out/
  python tools/super_resolve.py --workdir W --input faces/ --output out/ --net tnet
  python tools/super_resolve.py --workdir W --input photos/ --output out/ --detect
  python tools/super_resolve.py --workdir W --input photo.jpg --output out/ --boxes boxes.json

--weights takes a file written by `python -m fsr_jax.export` (the network and its config; no
workdir needed) instead of --workdir; exactly one of them is given.
Faces: every image (any size; resized to the network's LR size with PIL bicubic and counted, or
refused with --no-resize) becomes OUT/<name>.png at 4x that size. Photos (--detect or
--boxes): OUT/<name>.png is the photo enlarged 4x (PIL bicubic) with each face replaced by its
SR version (feathered blend), OUT/<name>_faces/face_<k>.png the SR faces, OUT/boxes.json the
boxes {file name: {"faces": [[x, y, w, h], ...], "crops": [...]}} in original photo pixels.
OpenCV's Haar cascade finds frontal faces from about 20 px; --boxes takes a boxes.json of the
same form (only "faces" is read) to give the faces by hand instead. A file that cannot be read
is reported by name and the rest are still processed; the exit status is 1 if any failed.
Runs without TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # fsr_jax/

from fsr_jax import checkpointing, export, inference, models, photos  # noqa: E402
from fsr_jax.data import images  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a trained run (W/teacher_student/checkpoints)")
    source.add_argument("--weights", help="a weights file of one network (python -m fsr_jax.export)")
    parser.add_argument("--input", required=True, help="an image file or a folder of them")
    parser.add_argument("--output", required=True, help="folder for the results (created)")
    parser.add_argument("--net", choices=inference.SR_NETS, default=None,
                        help="SR network (default snet; with --weights, the file's, which it must match)")
    parser.add_argument("--step", type=int, default=None,
                        help="checkpoint step (default: the newest; --workdir only)")
    parser.add_argument("--batch_size", type=int, default=64, help="faces per SR batch")
    parser.add_argument("--no-resize", dest="resize", action="store_false",
                        help="refuse face crops that are not exactly the LR size instead of resizing them")
    parser.add_argument("--detect", action="store_true", help="inputs are whole photos: find the faces")
    parser.add_argument("--boxes", type=pathlib.Path, help="boxes.json giving the faces of each photo "
                        "(implies photo mode; no detection)")
    parser.add_argument("--margin", type=float, default=photos.MARGIN,
                        help="crop side / face box side (default %(default)s)")
    args = parser.parse_args(argv)
    if args.batch_size <= 0:
        parser.error(f"--batch_size must be positive, got {args.batch_size}")
    if args.weights and args.step is not None:
        parser.error("--step picks a checkpoint of --workdir; a weights file holds one step")
    return args


def load_network(args) -> tuple[models.FeedbackSR, dict, int, str]:
    """(module, params, LR size, description) of --weights or of --net in --workdir."""
    if args.weights:
        model, params, meta = export.load_weights(args.weights, net=args.net)
        return model, params, meta["data"]["lr_size"], f"{meta['net']} of {args.weights} (checkpoint {meta['step']})"
    net = args.net or "snet"
    params, step = inference.load_sr_networks(args.workdir, (net,), args.step)
    run_cfg = inference.run_config(args.workdir)
    return models.build_sr(run_cfg.model), params[net], run_cfg.data.lr_size, f"{net} of {args.workdir} (checkpoint {step})"


def read_boxes(path: pathlib.Path) -> dict:
    """{file name: float (K, 4)} from a boxes.json ({name: {"faces": [[x, y, w, h], ...]}})."""
    try:
        return {name: np.asarray(entry["faces"], np.float64).reshape(-1, 4)
                for name, entry in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise images.DataError(f"{path}: not a boxes file of the form "
                               f'{{"photo.jpg": {{"faces": [[x, y, w, h], ...]}}}} ({err})') from err


def run_faces(args, paths, sr_fn, lr_size: int, out: pathlib.Path) -> list[tuple]:
    """Face crops -> OUT/<stem>.png; returns the failures (path, reason)."""
    read = inference.read_face_files(paths, lr_size, resize=args.resize)
    if read.resized:
        print(f"{len(read.resized)} of {len(read.paths)} faces resized to {lr_size}x{lr_size} (PIL bicubic)")
    if read.paths:
        for face, path in zip(sr_fn(read.faces), read.paths):
            Image.fromarray(face).save(out / f"{path.stem}.png")
        print(f"{len(read.paths)} faces super-resolved into {out}")
    return read.failed


def run_photos(args, paths, sr_fn, lr_size: int, scale: int, out: pathlib.Path) -> list[tuple]:
    """Photos -> OUT/<stem>.png, OUT/<stem>_faces/, OUT/boxes.json; returns the failures."""
    given = read_boxes(args.boxes) if args.boxes else None
    failed, record = [], {}
    for path in paths:
        if given is not None and path.name not in given:
            failed.append((path, f"{path}: no entry in {args.boxes}"))
            continue
        try:
            photo = images.read_image(path).pixels
        except (images.BadImageError, OSError) as err:
            failed.append((path, str(err)))
            continue
        result = photos.super_resolve_photo(photo, sr_fn, lr_size, scale,
                                            None if given is None else given[path.name], args.margin)
        Image.fromarray(result.image).save(out / f"{path.stem}.png")
        faces_dir = out / f"{path.stem}_faces"
        faces_dir.mkdir(exist_ok=True)
        for k, face in enumerate(result.faces):
            Image.fromarray(face).save(faces_dir / f"face_{k}.png")
        record[path.name] = {"faces": result.boxes.round(2).tolist(), "crops": result.crops.round(2).tolist()}
        print(f"{path.name}: {len(result.faces)} faces")
    (out / "boxes.json").write_text(json.dumps(record, indent=1))
    return failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = inference.image_paths(args.input)
        model, params, lr_size, described = load_network(args)
    except (checkpointing.CheckpointError, images.DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    scale = model.scale
    print(f"{described}, {len(paths)} input files")

    def sr_fn(lr):
        return inference.super_resolve(model, params, lr, args.batch_size)

    out = pathlib.Path(args.output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.detect or args.boxes:
            failed = run_photos(args, paths, sr_fn, lr_size, scale, out)
        else:
            failed = run_faces(args, paths, sr_fn, lr_size, out)
    except images.DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for _, reason in failed:
        print(f"error: {reason}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(paths)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
