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
refused with --noresize) becomes OUT/<name>.png at 4x that size. Photos (--detect or
--boxes): OUT/<name>.png is the photo enlarged 4x (PIL bicubic) with each face replaced by its
SR version (feathered blend), OUT/<name>_faces/face_<k>.png the SR faces, OUT/boxes.json the
boxes {file name: {"faces": [[x, y, w, h], ...], "crops": [...]}} in original photo pixels.
OpenCV's Haar cascade finds frontal faces from about 20 px; --boxes takes a boxes.json of the
same form (only "faces" is read) to give the faces by hand instead. A file that cannot be read
is reported by name and the rest are still processed; the exit status is 1 if any failed.
Runs without TensorFlow.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import flags
from PIL import Image

from fsr_jax import checkpointing, cli, export, inference, models, photos
from fsr_jax.data import images


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("workdir", None, "A trained run (W/teacher_student/checkpoints); or --weights.",
                        flag_values=fv)
    flags.DEFINE_string("weights", None, "A weights file of one network (python -m fsr_jax.export); "
                        "or --workdir.", flag_values=fv)
    flags.DEFINE_string("input", None, "An image file or a folder of them.", flag_values=fv)
    flags.DEFINE_string("output", None, "Folder for the results (created).", flag_values=fv)
    flags.DEFINE_enum("net", None, inference.SR_NETS, "SR network (default snet; with --weights, the "
                      "file's, which it must match).", flag_values=fv)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest; --workdir only).", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "Faces per SR batch.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("resize", True, "Resize face crops that are not exactly the LR size (PIL bicubic); "
                      "--noresize refuses them.", flag_values=fv)
    flags.DEFINE_bool("detect", False, "Inputs are whole photos: find the faces.", flag_values=fv)
    flags.DEFINE_string("boxes", None, "boxes.json giving the faces of each photo (implies photo mode; "
                        "no detection).", flag_values=fv)
    flags.DEFINE_float("margin", photos.MARGIN, "Crop side / face box side.", flag_values=fv)
    flags.mark_flags_as_required(["input", "output"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["workdir", "weights"], required=True, flag_values=fv)
    flags.register_multi_flags_validator(
        ["weights", "step"], lambda given: not (given["weights"] and given["step"] is not None),
        "--step picks a checkpoint of --workdir; a weights file holds one step", flag_values=fv)


def load_network(args: flags.FlagValues) -> tuple[models.FeedbackSR, dict, int, str]:
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
    given = read_boxes(pathlib.Path(args.boxes)) if args.boxes else None
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


def run(args: flags.FlagValues, positional: list[str]) -> int:
    del positional
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


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv)


if __name__ == "__main__":
    main()
