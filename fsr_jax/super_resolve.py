"""Super-resolve face crops, folders of them, or the faces in whole photos with the default
weights, a trained run or exported weights.

  python -m fsr_jax.super_resolve --input face.png --output out/
  python -m fsr_jax.super_resolve --workdir W --input face.png --output out/
  python -m fsr_jax.super_resolve --weights snet.msgpack --input face.png --output out/
  python -m fsr_jax.super_resolve --workdir W --input faces/ --output out/ --net tnet
  python -m fsr_jax.super_resolve --workdir W --input photos/ --output out/ --detect
  python -m fsr_jax.super_resolve --workdir W --input photo.jpg --output out/ --boxes boxes.json

Without --workdir or --weights the default weights run (fsr_jax/pretrained: SNet, or TNet with
--net tnet, trained with the paper's recipe; one line says so). --weights takes a file written by
`python -m fsr_jax.export` (the network and its config; no workdir needed) instead of --workdir;
at most one of them is given.
Faces: every image (any size; resized to the network's LR size with PIL bicubic and counted, or
refused with --noresize) becomes OUT/<name>.png at 4x that size. Photos (--detect or
--boxes): OUT/<name>.png is the photo enlarged 4x (PIL bicubic) with each face replaced by its
SR version (feathered blend; written strip by strip, so memory follows the photo, not its 16x
larger result), OUT/<name>_faces/face_<k>.png the SR faces, OUT/boxes.json the
boxes {file name: {"faces": [[x, y, w, h], ...], "crops": [...]}} in original photo pixels.
The faces are found by MTCNN (--detector mtcnn, the default: a CNN run in JAX with its published
weights, fetched into the weight cache on first use; faces from --min_face 12 px, turned and
profile faces too; --min_score drops doubtful ones) or OpenCV's Haar cascade (--detector haar:
frontal faces from about 20 px). --boxes takes a boxes.json of the same form (only "faces" is
read) to give the faces by hand instead. boxes.json keeps the entries
of earlier calls into the same folder (this call's photos replace theirs). Installed as the
console script `fsr-jax-super-resolve` too.

<name> is the input's stem (photo.jpg -> OUT/photo.png), or its whole name when another input has
the same stem (a.png and a.jpg -> a.png.png and a.jpg.png). Nothing is written over an input:
an output that is an input file, or two inputs that would get one output, stop the run before
any work (exit status 2). Every output is written to a hidden temporary file beside it and
renamed when complete, so a killed run never leaves a partial OUT file. An input that cannot be
used (an unreadable or undecodable file, one over PIL's pixel limit, a photo whose --boxes entry
is missing or unusable: not {"faces": [[x, y, w, h], ...]}, a size that is not a positive
finite number, a box outside the photo) is reported in one line naming it and skipped; the rest
are processed, and the exit status is 1 with the count of skipped inputs. A --boxes file that
is not a mapping from file names is refused before any work.

Runs without TensorFlow.
"""
from __future__ import annotations

import math
import json
import os
import pathlib
import sys

import cv2
import numpy as np
import tqdm
from absl import flags

from fsr_jax import cli, face_detector, files, inference, models, photos, pretrained
from fsr_jax.data import images
from fsr_jax.data.config import MAX_IMAGE_PIXELS
from fsr_jax.errors import FsrJaxError

BOXES_FILE = "boxes.json"
DETECTORS = ("mtcnn", "haar")
#: Decision: faces are super-resolved up to this multiple of the network's input side (32 px
#: for the paper's 16-px nets); a larger crop shrunk to the input would lose more than half its
#: resolution, more than SR puts back, so it is left as the photo has it.
MAX_FACE_MULTIPLE = 2
MAX_BOXES_BYTES = 64 * 2**20
MAX_COORDINATE = 1e7


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("workdir", None, "A trained run (W/teacher_student/checkpoints); or --weights; "
                        "neither: the default weights.", flag_values=fv)
    flags.DEFINE_string("weights", None, "A weights file of one network (python -m fsr_jax.export); "
                        "or --workdir; neither: the default weights.", flag_values=fv)
    flags.DEFINE_string("input", None, "An image file or a folder of them.", flag_values=fv)
    flags.DEFINE_string("output", None, "Folder for the results (created).", flag_values=fv)
    flags.DEFINE_enum("net", None, inference.SR_NETS, "SR network (default snet; with --weights, the "
                      "file's, which it must match).", flag_values=fv)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest; --workdir only).", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "Faces per SR batch.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("resize", True, "Resize face crops that are not exactly the LR size (PIL bicubic); "
                      "--noresize refuses them.", flag_values=fv)
    flags.DEFINE_bool("detect", False, "Inputs are whole photos: find the faces.", flag_values=fv)
    flags.DEFINE_enum("detector", "mtcnn", tuple(DETECTORS), "Photos: the face detector (mtcnn: a CNN, faces "
                      "from 12 px; haar: OpenCV's cascade, frontal faces from about 20 px).", flag_values=fv)
    flags.DEFINE_float("min_face", None, "Photos: the smallest face searched for, in photo pixels (default: "
                       f"{face_detector.MIN_FACE} for mtcnn, {photos.MIN_FACE} for haar).", flag_values=fv)
    flags.register_validator("min_face", lambda m: m is None or (math.isfinite(m) and 4 <= m <= 10_000),
                             "--min_face must be a number of pixels from 4 to 10000", flag_values=fv)
    flags.DEFINE_float("min_score", face_detector.THRESHOLDS[2], "Photos, mtcnn: the face probability a "
                       "detection must exceed (O-Net's; raise it to drop doubtful faces).", flag_values=fv)
    flags.register_validator("min_score", lambda m: 0 <= m < 1, "--min_score must be from 0 to below 1",
                             flag_values=fv)
    flags.DEFINE_string("boxes", None, "boxes.json giving the faces of each photo (implies photo mode; "
                        "no detection).", flag_values=fv)
    flags.DEFINE_integer("max_pixels", MAX_IMAGE_PIXELS, "Inputs with more pixels (width x height) are "
                         "skipped before decoding.", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("upscale", "4", ("1", "2", "4"), "Photos: the output's size as a multiple of the photo's "
                      "(1: the photo's size, faces improved in place).", flag_values=fv)
    flags.DEFINE_integer("max_face", None, "Photos: a face whose crop is larger than this many pixels "
                         "(of the photo) is left as it is, not shrunk to the network's input size "
                         f"(default: {MAX_FACE_MULTIPLE}x that size, 32 px for the paper's nets).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("margin", photos.MARGIN, "Crop side / face box side, from 0.5 to 4.", flag_values=fv)
    flags.register_validator("margin", lambda m: math.isfinite(m) and 0.5 <= m <= 4,
                             "--margin must be a number from 0.5 to 4 (crop side / face box side)", flag_values=fv)
    flags.mark_flags_as_required(["input", "output"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["workdir", "weights"], flag_values=fv)
    flags.register_multi_flags_validator(
        ["workdir", "step"], lambda given: bool(given["workdir"]) or given["step"] is None,
        "--step picks a checkpoint of --workdir; a weights file holds one step", flag_values=fv)


def load_network(args: flags.FlagValues) -> tuple[models.FeedbackSR, dict, int, str]:
    """(module, params, LR size, description) of --weights, of --net in --workdir, or else of
    the default weights of --net."""
    if args.workdir:
        trained = inference.load_trained_sr(args.workdir, names=(args.net or "snet",), step=args.step)
    else:
        weights = args.weights or pretrained.path(args.net or "snet")
        trained = inference.load_trained_sr(weights=[weights], names=(args.net,) if args.net else inference.SR_NETS)
    net = next(iter(trained.params))
    described = trained.describe(net) if args.workdir or args.weights else pretrained.describe(net)
    return trained.model, trained.params[net], trained.lr_size, described


class Skipped(Exception):
    """One input that is skipped; the message names it and says why."""


def read_boxes(path: pathlib.Path) -> dict[str, np.ndarray | str]:
    """{file name: float (K, 4) boxes, or the reason its entry is unusable} from a boxes.json
    ({name: {"faces": [[x, y, w, h], ...]}}; w and h positive, all four finite numbers).

    Raises:
      DataError: naming the file, when it cannot be read, is not JSON, or is not such a mapping.
    """
    form = '{"photo.jpg": {"faces": [[x, y, w, h], ...]}}'
    try:
        entries = json.loads(files.read_bytes(path, MAX_BOXES_BYTES, "a boxes file"))
    except (OSError, ValueError) as err:
        raise images.DataError(f"{path}: not a boxes file of the form {form} ({err})") from err
    except RecursionError:
        raise images.DataError(f"{path}: not a boxes file of the form {form} (nested too deeply)") from None
    if not isinstance(entries, dict):
        raise images.DataError(f"{path}: not a boxes file of the form {form} (the top level is a "
                               f"{type(entries).__name__}, not a mapping from photo names)")
    return {name: _entry_boxes(entry, f"{path}: entry {name!r}") for name, entry in entries.items()}


def _entry_boxes(entry, where: str) -> np.ndarray | str:
    """float (K, 4) boxes of one boxes.json entry, or why it is unusable (a line naming it)."""
    faces = entry.get("faces") if isinstance(entry, dict) else None
    if not isinstance(faces, list):
        return f'{where}: not of the form {{"faces": [[x, y, w, h], ...]}}'
    for k, box in enumerate(faces):
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            return f"{where}: face {k} is {json.dumps(box)}, not [x, y, w, h] (four numbers)"
        if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in box):
            return f"{where}: face {k} is {json.dumps(box)}: each number must be finite and at most {MAX_COORDINATE:.0e} in size"
        if box[2] <= 0 or box[3] <= 0:
            return f"{where}: face {k} is {json.dumps(box)}: its width and height must be positive"
    return np.asarray(faces, np.float64).reshape(-1, 4)


def check_outputs(paths: list[pathlib.Path], names: list[str], out: pathlib.Path, photo_mode: bool) -> None:
    """Refuses (DataError) a run that would write one output for two inputs, or over an input.

    Checked before any work: two inputs whose output names are the same (letter case ignored);
    an output file that is an input file (the same file, by device and inode: also through a
    link, or on a file system that ignores case); with photos, a face folder that holds an input.
    """
    seen: dict[str, pathlib.Path] = {}
    for path, name in zip(paths, names):
        other = seen.setdefault(f"{name}.png".casefold(), path)
        if other != path:
            raise images.DataError(f"{other} and {path} would both be written to {out / (name + '.png')}; "
                                   "rename one of them")
    inputs = {}
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue  # unreadable: skipped later, with its reason
        inputs[(stat.st_dev, stat.st_ino)] = path
    outputs = [out / f"{name}.png" for name in names] + ([out / BOXES_FILE] if photo_mode else [])
    for output in outputs:
        try:
            stat = output.stat()
        except OSError:
            continue  # not there yet: not an input
        if (stat.st_dev, stat.st_ino) in inputs:
            raise images.DataError(f"{output} is the input {inputs[stat.st_dev, stat.st_ino]}: it would be "
                                   "overwritten; give an --output folder that holds none of the inputs")
    if photo_mode:
        folders = {os.path.realpath(out / f"{name}_faces") for name in names}
        for path in paths:
            if os.path.realpath(path.parent) in folders:
                raise images.DataError(f"the input {path} is in a folder of SR faces that this run "
                                       f"writes ({path.parent}); give another --output folder")


def report(reason: str) -> None:
    """One `error:` line on stderr, on a line of its own under a progress bar (tqdm.write)."""
    tqdm.tqdm.write(f"error: {reason}", file=sys.stderr)


def run_faces(args, paths, names, sr_fn, lr_size: int, out: pathlib.Path) -> list[str]:
    """Face crops -> OUT/<name>.png; returns the reasons of the inputs skipped (reported)."""
    read = inference.read_face_files(paths, lr_size, resize=args.resize, max_pixels=args.max_pixels)
    failed = [reason for _, reason in read.failed]
    for reason in failed:
        report(reason)
    if read.resized:
        print(f"{len(read.resized)} of {len(read.paths)} faces resized to {lr_size}x{lr_size} (PIL bicubic)")
    if read.paths:
        name_of = dict(zip(paths, names))
        written = 0
        for face, path in zip(sr_fn(read.faces, f"super-resolving {len(read.faces)} faces"), read.paths):
            try:
                files.write_png(out / f"{name_of[path]}.png", face)
                written += 1
            except OSError as err:
                failed.append(f"{path}: cannot write its output ({err})")
                report(failed[-1])
        print(f"{written} faces super-resolved into {out}")
    return failed


def photo_boxes(path: pathlib.Path, given: dict | None, boxes_file: str, photo: np.ndarray) -> np.ndarray | None:
    """The boxes of a photo from --boxes (None: detect); Skipped when its entry is missing,
    unusable, or has a face wholly outside the photo."""
    if given is None:
        return None
    boxes = given[path.name]
    if isinstance(boxes, str):
        raise Skipped(boxes)
    height, width = photo.shape[:2]
    for k, (x, y, w, h) in enumerate(boxes):
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise Skipped(f"{boxes_file}: entry {path.name!r}: face {k} is {[float(v) for v in (x, y, w, h)]}, outside "
                          f"the {width}x{height} photo")
    return boxes


def detector(args) -> photos.Detector:
    """The --detector with its --min_face (and, for mtcnn, --min_score): uint8 photo -> float (K, 4)
    boxes. MTCNN's weights are loaded here (fetched on first use): MissingWeightsError if they cannot be."""
    if args.detector == "haar":
        return lambda photo: photos.detect_faces(photo, args.min_face or photos.MIN_FACE)
    face_detector.load_params()
    return lambda photo: face_detector.detect_faces(photo, args.min_face or face_detector.MIN_FACE, args.min_score)


def run_photos(args, paths, names, sr_fn, lr_size: int, scale: int, out: pathlib.Path,
               given: dict | None, detect: photos.Detector) -> list[str]:
    """Photos -> OUT/<name>.png, OUT/<name>_faces/, OUT/boxes.json; returns the reasons of the
    photos skipped (reported as they happen)."""
    failed, record = [], {}
    max_face = args.max_face or MAX_FACE_MULTIPLE * lr_size
    for path, name in tqdm.tqdm(list(zip(paths, names)), desc="photos", unit=" photos", leave=False):
        try:
            if given is not None and path.name not in given:
                raise Skipped(f"{path}: no entry in {args.boxes}")
            photo = inference.read_image(path, args.max_pixels)
            found = photos.super_resolve_faces(photo, sr_fn, lr_size, scale, photo_boxes(path, given, args.boxes, photo),
                                               args.margin, max_face, detect)
            with files.open_atomic(out / f"{name}.png") as file:
                photos.write_enlarged_photo(file, photo, found, int(args.upscale))
            del photo
            write_faces(out / f"{name}_faces", found.faces)
        except (Skipped, images.BadImageError) as err:
            failed.append(str(err))
        except (OSError, ValueError, MemoryError, cv2.error) as err:
            failed.append(f"{path}: {type(err).__name__}: {err}")
        else:
            record[path.name] = {"faces": found.boxes.round(2).tolist(), "crops": found.crops.round(2).tolist(),
                                 "enhanced": found.enhanced.tolist()}
            kept = len(found.boxes) - len(found.faces)
            count = len(found.boxes)
            tqdm.tqdm.write(f"{path.name}: {count} face{'' if count == 1 else 's'}"
                            + (f", {kept} over {max_face} px left as the photo has {'it' if kept == 1 else 'them'}"
                               if kept else ""))
            continue
        report(failed[-1])
    files.write_text(out / BOXES_FILE, json.dumps({**earlier_boxes(out / BOXES_FILE), **record}, indent=1))
    return failed


def write_faces(folder: pathlib.Path, faces: np.ndarray) -> None:
    """folder/face_<k>.png for each SR face, and no other face_<k>.png left from an earlier run."""
    for k, face in enumerate(faces):
        files.write_png(folder / f"face_{k}.png", face)
    for stale in folder.glob("face_*.png"):
        index = stale.stem.removeprefix("face_")
        if index.isdigit() and int(index) >= len(faces):
            stale.unlink()


def earlier_boxes(path: pathlib.Path) -> dict:
    """The photos' entries of an earlier run's boxes.json in the output folder (kept beside this
    run's), or {} when there is none or it is not one (it is then replaced, with a line saying so)."""
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        entries = None
    if isinstance(entries, dict) and all(isinstance(e, dict) and "faces" in e for e in entries.values()):
        return entries
    print(f"{path}: not a boxes file of an earlier run; replaced by this run's boxes")
    return {}


def run(args: flags.FlagValues, positional: list[str]) -> int:
    del positional
    out = pathlib.Path(args.output).expanduser()
    photo_mode = bool(args.detect or args.boxes)
    try:
        paths = inference.image_paths(args.input)
        names = files.output_names(paths)
        check_outputs(paths, names, out, photo_mode)
        given = read_boxes(pathlib.Path(args.boxes)) if args.boxes else None
        model, params, lr_size, described = load_network(args)
        detect = detector(args) if photo_mode and given is None else None
        files.writable_folder(out)
    except FsrJaxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    scale = model.scale
    print(f"{described}, {len(paths)} input files")

    def sr_fn(lr, desc=None):
        return inference.super_resolve(model, params, lr, args.batch_size, desc)

    if photo_mode:
        failed = run_photos(args, paths, names, sr_fn, lr_size, scale, out, given, detect)
    else:
        failed = run_faces(args, paths, names, sr_fn, lr_size, out)
    if failed:
        print(f"{len(failed)} of {len(paths)} input files skipped (each named above)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv)


if __name__ == "__main__":
    main()
