"""The super-resolve tool: folders with a bad file, whole photos, paste-back, no TensorFlow."""
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from fsr_jax import photos

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "fsr_jax" / "super_resolve.py"
# Runs the tool with TensorFlow and TFDS made unimportable.
NO_TF = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
         "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def super_resolve():
    from fsr_jax import super_resolve as tool  # noqa: PLC0415

    return tool.main


def test_a_folder_with_a_corrupt_file_is_processed_and_the_file_reported(tmp_path, smoke_run, load_faces):
    inputs = tmp_path / "in"
    inputs.mkdir()
    faces = load_faces("train/HIGH", 2)
    Image.fromarray(faces[0]).save(inputs / "big.png")                                  # 64x64: resized
    Image.fromarray(faces[1]).resize((16, 16), Image.BICUBIC).save(inputs / "small.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    proc = subprocess.run([sys.executable, "-c", NO_TF, str(TOOL), "--workdir", str(smoke_run),
                           "--input", str(inputs), "--output", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big.png", "small.png"]
    assert {Image.open(p).size for p in (tmp_path / "out").iterdir()} == {(64, 64)}
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(inputs / "broken.png") in errors[0]
    assert "1 of 2 faces resized to 16x16" in proc.stdout


def test_noresize_refuses_faces_of_another_size(tmp_path, smoke_run, load_faces, super_resolve, capsys):
    Image.fromarray(load_faces("train/HIGH", 1)[0]).save(tmp_path / "face.png")
    assert super_resolve(["--workdir", str(smoke_run), "--input", str(tmp_path / "face.png"),
                          "--output", str(tmp_path / "out"), "--noresize"]) == 1
    assert "is 64x64; --noresize needs 16x16" in capsys.readouterr().err
    assert not list((tmp_path / "out").iterdir())


def test_the_old_dash_flag_is_refused_with_absls_message_and_help_lists_the_flags(tmp_path):
    command = [sys.executable, str(TOOL), "--workdir", str(tmp_path), "--input", str(tmp_path),
               "--output", str(tmp_path / "out")]
    proc = subprocess.run([*command, "--no-resize"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not (tmp_path / "out").exists()
    assert proc.stderr == ("FATAL Flags parsing error: Unknown command line flag 'no-resize'. Did you mean: "
                           "resize ?\nPass --helpshort or --helpfull to see help on flags.\n")
    proc = subprocess.run([sys.executable, str(TOOL), "--helpshort"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.startswith("Super-resolve face crops")
    for flag in ("--[no]resize:", "--[no]detect:", "--batch_size:", "--workdir:", "--weights:", "--output:"):
        assert flag in proc.stdout, flag


def composite_photo(load_faces, sizes=(32, 36, 40, 44, 48)):
    """A 160x320 smooth background with real HR faces of the given sizes: (photo, true boxes)."""
    y, x = np.mgrid[0:160, 0:320]
    background = np.stack([80 + x // 4, 120 + 0 * x, 90 + y // 3], axis=-1).astype(np.uint8)
    photo = Image.fromarray(background)
    boxes = []
    for i, (face, size) in enumerate(zip(load_faces("train/HIGH", len(sizes)), sizes)):
        left, top = 10 + 62 * i, 40 + 40 * (i % 2)
        photo.paste(Image.fromarray(face).resize((size, size), Image.BICUBIC), (left, top))
        boxes.append((left, top, size, size))
    return np.asarray(photo), np.array(boxes, np.float64)


def test_detect_finds_the_faces_of_a_photo_and_writes_one_crop_each(tmp_path, smoke_run, load_faces, super_resolve):
    photo, truth = composite_photo(load_faces)
    Image.fromarray(photo).save(tmp_path / "group.png")
    assert super_resolve(["--workdir", str(smoke_run), "--input", str(tmp_path / "group.png"),
                          "--output", str(tmp_path / "out"), "--detect", "--max_face=1000"]) == 0
    found = np.array(json.loads((tmp_path / "out" / "boxes.json").read_text())["group.png"]["faces"])
    centres = found[:, :2] + found[:, 2:] / 2
    inside = [(t[0] <= cx <= t[0] + t[2]) and (t[1] <= cy <= t[1] + t[3]) for t in truth for cx, cy in centres]
    hits = np.array(inside).reshape(len(truth), len(found)).any(axis=1)
    assert hits.sum() >= len(truth) - 1
    assert len(list((tmp_path / "out" / "group_faces").glob("face_*.png"))) == len(found)
    assert Image.open(tmp_path / "out" / "group.png").size == (4 * 320, 4 * 160)


def test_both_detectors_find_the_faces_and_bad_detector_flags_are_one_line(tmp_path, smoke_run, load_faces,
                                                                            super_resolve, capsys, monkeypatch):
    photo, truth = composite_photo(load_faces)
    Image.fromarray(photo).save(tmp_path / "group.png")
    base = ["--workdir", str(smoke_run), "--input", str(tmp_path / "group.png"), "--detect", "--max_face=1000"]
    found = {}
    for detector in ("mtcnn", "haar"):
        assert super_resolve([*base, "--output", str(tmp_path / detector), f"--detector={detector}"]) == 0
        found[detector] = np.array(json.loads((tmp_path / detector / "boxes.json").read_text())["group.png"]["faces"])
    assert len(found["mtcnn"]) == len(truth)
    centres = found["mtcnn"][:, :2] + found["mtcnn"][:, 2:] / 2
    assert all(t[0] <= cx <= t[0] + t[2] and t[1] <= cy <= t[1] + t[3]
               for t, (cx, cy) in zip(truth[np.argsort(truth[:, 0])], centres[np.argsort(centres[:, 0])]))
    assert not np.array_equal(found["mtcnn"], found["haar"])
    # a score over every face's: nothing found, the photo is still written
    assert super_resolve([*base, "--output", str(tmp_path / "none"), "--min_score=0.999999"]) == 0
    assert json.loads((tmp_path / "none" / "boxes.json").read_text())["group.png"]["faces"] == []
    capsys.readouterr()
    for flag, message in (("--min_face=2", "--min_face must be a number of pixels from 4 to 10000"),
                          ("--min_score=1", "--min_score must be from 0 to below 1"),
                          ("--detector=dlib", "value should be one of <mtcnn|haar>")):
        assert super_resolve([*base, "--output", str(tmp_path / "bad"), flag]) == 1
        assert message in capsys.readouterr().err
    # no detector weights and no way to fetch them: one line naming the install command, before any work
    monkeypatch.setenv("FSR_JAX_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("FSR_JAX_OFFLINE", "1")
    from fsr_jax import face_detector  # noqa: PLC0415
    face_detector.load_params.cache_clear()
    try:
        assert super_resolve([*base, "--output", str(tmp_path / "offline")]) == 2
    finally:
        face_detector.load_params.cache_clear()
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "MTCNN face detector weights" in errors[0] and "install" in errors[0], errors
    assert not (tmp_path / "offline" / "group.png").exists()


def test_paste_back_changes_exactly_the_pixels_of_the_given_boxes():
    photo = np.full((40, 60, 3), 100, np.uint8)
    boxes = np.array([[5, 6, 12, 12], [30, 10, 20, 16]], np.float64)

    def bright_faces(lr):
        assert lr.shape == (2, 16, 16, 3)
        return np.full((len(lr), 64, 64, 3), 250, np.uint8)

    result = photos.super_resolve_photo(photo, bright_faces, 16, 4, boxes=boxes)
    canvas = photos.upscale(photo, 4)
    changed = np.any(result.image != canvas, axis=-1)
    expected = np.zeros_like(changed)
    for x, y, w, h in np.rint(4 * result.crops).astype(int):
        expected[y:y + h, x:x + w] = True
    np.testing.assert_array_equal(changed, expected)
    np.testing.assert_allclose(result.crops[1], [30 - 3, 18 - 13, 26, 26])   # squared: 1.3 x 20
    mask = photos.feather_mask(20, 30, 0.2)
    assert mask.min() > 0 and mask.max() == 1 and mask[10, 15] == 1 and mask[0, 0] < mask[1, 1]


def png_over_pils_pixel_limit(path, side=15000):
    """A valid 1-bit grey PNG of side x side pixels (225 M: over twice PIL's limit, so PIL's
    DecompressionBombError), a few kB on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(bytes((1 + (side + 7) // 8) * side), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_inputs_sharing_a_stem_get_distinct_outputs_and_an_input_is_never_overwritten(
        tmp_path, smoke_run, load_faces, super_resolve, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    faces = load_faces("train/HIGH", 2, size=16)
    Image.fromarray(faces[0]).save(inputs / "a.png")
    Image.fromarray(faces[1]).save(inputs / "a.jpg", quality=95)
    Image.fromarray(faces[1]).save(inputs / "b.png")
    png_over_pils_pixel_limit(inputs / "huge.png")
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    run = ["--workdir", str(smoke_run), "--input", str(inputs)]

    assert super_resolve([*run, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg.png", "a.png.png", "b.png"]
    a_png, a_jpg = (np.asarray(Image.open(tmp_path / "out" / n)) for n in ("a.png.png", "a.jpg.png"))
    assert a_png.shape == a_jpg.shape == (64, 64, 3) and not np.array_equal(a_png, a_jpg)
    errors = error_lines(err)
    assert len(errors) == 1 and str(inputs / "huge.png") in errors[0] and "pixels" in errors[0]
    assert "1 of 4 input files skipped" in err

    assert super_resolve([*run, "--output", str(inputs)]) == 2          # b.png would be written over
    err = capsys.readouterr().err
    assert error_lines(err) == [f"error: {inputs / 'b.png'} is the input {inputs / 'b.png'}: it would be "
                                "overwritten; give an --output folder that holds none of the inputs"]
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before


def test_photos_with_bad_boxes_entries_or_files_are_named_and_skipped_and_the_rest_written(
        tmp_path, smoke_run, super_resolve, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    for name in ("good", "zero", "nan", "listed", "outside", "unlisted", "words"):
        Image.fromarray(photo).save(inputs / f"{name}.png")
    png_over_pils_pixel_limit(inputs / "huge.png")
    entries = {"good.png": {"faces": [[10, 10, 30, 30], [40, 20, 20, 25]]}, "zero.png": {"faces": [[10, 10, 0, 30]]},
               "nan.png": {"faces": [[10, 10, float("nan"), 30]]}, "listed.png": [[10, 10, 30, 30]],
               "outside.png": {"faces": [[500, 10, 30, 30]]}, "words.png": {"faces": [["10", 10, 30, 30]]},
               "huge.png": {"faces": [[1, 1, 5, 5]]}}
    (tmp_path / "boxes.json").write_text(json.dumps(entries))
    args = ["--workdir", str(smoke_run), "--input", str(inputs), "--output", str(tmp_path / "out"),
            "--boxes", str(tmp_path / "boxes.json"), "--max_face=1000"]
    assert super_resolve(args) == 1
    err = capsys.readouterr().err
    errors = error_lines(err)
    assert len(errors) == 7, errors
    for name, says in [("zero.png", "width and height must be positive"), ("nan.png", "must be finite"),
                       ("listed.png", 'not of the form {"faces"'), ("outside.png", "outside the 80x60 photo"),
                       ("words.png", "not [x, y, w, h]"), ("unlisted.png", "no entry in"), ("huge.png", "pixels")]:
        assert sum(name in line and says in line for line in errors) == 1, (name, errors)
    assert "7 of 8 input files skipped" in err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["boxes.json", "good.png", "good_faces"]
    assert Image.open(out / "good.png").size == (320, 240)
    assert sorted(p.name for p in (out / "good_faces").iterdir()) == ["face_0.png", "face_1.png"]
    assert list(json.loads((out / "boxes.json").read_text())) == ["good.png"]

    (tmp_path / "boxes.json").write_text(json.dumps([entries["good.png"]]))
    assert super_resolve([*args[:5], str(tmp_path / "out2"), *args[6:]]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "the top level is a list, not a mapping from photo names" in errors[0]
    assert not (tmp_path / "out2").exists()


def test_a_run_killed_while_writing_a_photo_leaves_no_partial_file_under_its_name(
        tmp_path, smoke_run, super_resolve):
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)   # a 4x PNG of ~230 kB
    Image.fromarray(photo).save(tmp_path / "group.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"group.png": {"faces": [[10, 10, 30, 30]]}}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "group.png").write_bytes(b"an earlier result")
    args = ["--workdir", str(smoke_run), "--input", str(tmp_path / "group.png"), "--output", str(out),
            "--boxes", str(tmp_path / "boxes.json"), "--max_face=1000"]

    # the kernel kills the tool (SIGXFSZ, which Python otherwise ignores) when a write passes 64 kB
    killed_at_64_kb = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
                       "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16)); "
                       "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", killed_at_64_kb, str(TOOL), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr
    assert (out / "group.png").read_bytes() == b"an earlier result"
    assert [p.name.startswith(".group.png.") for p in out.iterdir() if p.name != "group.png"] == [True]

    assert super_resolve(args) == 0
    assert Image.open(out / "group.png").size == (320, 240)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["boxes.json", "group.png",
                                                                                   "group_faces"]


def test_reruns_keep_every_photos_boxes_and_leave_no_stale_face_files(tmp_path, smoke_run, super_resolve):
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    for name in ("a", "b"):
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"

    def run(name, boxes):
        (tmp_path / "boxes.json").write_text(json.dumps({f"{name}.png": {"faces": boxes}}))
        assert super_resolve(["--workdir", str(smoke_run), "--input", str(tmp_path / f"{name}.png"),
                              "--output", str(out), "--boxes", str(tmp_path / "boxes.json"), "--max_face=1000"]) == 0

    run("a", [[10, 10, 30, 30], [40, 20, 20, 25]])
    run("b", [[5, 5, 20, 20]])
    run("a", [[10, 10, 30, 30]])   # a now has one face: face_1.png of the first call is gone
    assert sorted(p.name for p in (out / "a_faces").iterdir()) == ["face_0.png"]
    kept = json.loads((out / "boxes.json").read_text())
    assert sorted(kept) == ["a.png", "b.png"] and len(kept["a.png"]["faces"]) == 1


def test_crafted_boxes_bad_margins_pixel_limits_and_unwritable_outputs_are_one_line_each(
        tmp_path, smoke_run, super_resolve, capsys):
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "p.png")
    base = ["--workdir", str(smoke_run), "--input", str(tmp_path / "p.png")]
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"p.png": {"faces": [[100000000000000000000, 1, 5, 5]]}}')
    assert super_resolve([*base, "--output", str(tmp_path / "o1"), "--boxes", str(boxes)]) == 1
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "face 0 is [100000000000000000000, 1, 5, 5]: each number must be finite" in errors[0]
    boxes.write_text("[" * 100_000 + "]" * 100_000)
    assert super_resolve([*base, "--output", str(tmp_path / "o2"), "--boxes", str(boxes)]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "nested too deeply" in errors[0], errors
    for margin in ("0", "-1", "nan", "100"):
        assert super_resolve([*base, "--output", str(tmp_path / "o3"), "--detect", f"--margin={margin}"]) == 1
        assert "--margin must be a number from 0.5 to 4" in capsys.readouterr().err
    assert super_resolve([*base, "--output", str(tmp_path / "o4"), "--detect", "--max_pixels=4799"]) == 1
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "too large: 4,800 pixels (80x60), over" in errors[0], errors
    (tmp_path / "a_file").write_text("x")
    assert super_resolve([*base, "--output", str(tmp_path / "a_file"), "--detect"]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert errors == [f"error: cannot write into the folder {tmp_path / 'a_file'}: File exists"], errors


def test_upscale_1_keeps_the_photos_size_and_a_large_face_is_left_as_bicubic_has_it(tmp_path, smoke_run,
                                                                                      load_faces, super_resolve):
    """A 120-px face (crop 156 px, over the default --max_face of 32) is not shrunk to 16 px:
    its region of the 4x output is exactly PIL bicubic's (so no worse than bicubic by any
    measure); a 20-px face is super-resolved. --upscale 1 keeps the photo's size and changes
    the small face's pixels only."""
    photo = Image.fromarray(np.full((200, 360, 3), 90, np.uint8))
    big, small = load_faces("test/celeba/HR", 2)
    photo.paste(Image.fromarray(big).resize((120, 120), Image.BICUBIC), (20, 40))
    photo.paste(Image.fromarray(small).resize((20, 20), Image.BICUBIC), (250, 90))
    photo.save(tmp_path / "p.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"p.png": {"faces": [[20, 40, 120, 120], [250, 90, 20, 20]]}}))
    pixels = np.asarray(photo)
    for upscale in ("4", "1"):
        out = tmp_path / f"out{upscale}"
        assert super_resolve(["--workdir", str(smoke_run), "--input", str(tmp_path / "p.png"), "--output", str(out),
                              "--boxes", str(tmp_path / "boxes.json"), f"--upscale={upscale}"]) == 0
        result = np.asarray(Image.open(out / "p.png"))
        factor = int(upscale)
        base = photos.upscale(pixels, factor) if factor > 1 else pixels
        assert result.shape == base.shape
        changed = np.any(result != base, axis=-1)
        entry = json.loads((out / "boxes.json").read_text())["p.png"]
        assert entry["enhanced"] == [False, True]
        x, y, side = (factor * np.asarray(entry["crops"][1])[[0, 1, 2]]).round().astype(int)
        assert changed[y:y + side, x:x + side].any() and not changed[:, :x].any() and not changed[:y].any()
        assert sorted(p.name for p in (out / "p_faces").iterdir()) == ["face_0.png"]
