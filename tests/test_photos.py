"""Whole photos: enlarged strip by strip, exactly as in one piece, in memory that follows the photo."""
import io
import tracemalloc

import cv2
import numpy as np
import pytest
from PIL import Image

from fsr_jax import photos


def smooth_photo(height, width, seed=0):
    """uint8 (height, width, 3): gradients with a little noise (no faces for the cascade)."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 8, (height, width, 3))
    gradients = np.stack([40 + x * 150 // width, 60 + y * 150 // height, 100 + 0 * x], axis=-1)
    return (gradients + noise).astype(np.uint8)


def fake_sr(lr):
    """uint8 (K, 16, 16, 3) -> uint8 (K, 64, 64, 3): a different, seeded image per face."""
    return np.random.default_rng(len(lr)).integers(0, 256, (len(lr), 64, 64, 3), dtype=np.uint8)


def reference_paste(canvas, faces, boxes, feather=photos.FEATHER):
    """The blend in one float32 pass over the whole canvas (the definition `paste_faces` keeps)."""
    out = canvas.astype(np.float32)
    corners = np.rint(np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)).astype(int)
    for face, (x, y, x1, y1) in zip(faces, corners):
        resized = np.asarray(Image.fromarray(face).resize((x1 - x, y1 - y), Image.BICUBIC), np.float32)
        mask = photos.feather_mask(y1 - y, x1 - x, feather)[..., None]
        out[y:y1, x:x1] = mask * resized + (1.0 - mask) * out[y:y1, x:x1]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(150, 230), (97, 61), (1, 5)])
@pytest.mark.parametrize("rows", [1, 7, 256])
def test_strips_of_an_enlarged_photo_are_the_whole_enlargement(shape, rows):
    photo = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for factor in (2, 4):
        strips = list(photos.upscale_strips(photo, factor, rows))
        assert [top for top, _ in strips] == list(range(0, factor * shape[0], rows))
        np.testing.assert_array_equal(np.concatenate([s for _, s in strips]), photos.upscale(photo, factor))


def test_overlapping_faces_across_strips_blend_as_in_one_float_pass_and_the_png_holds_the_same_pixels():
    photo = np.random.default_rng(2).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    boxes = np.array([[5, 6, 40, 40], [20, 20, 50, 30], [100, 60, 70, 80], [0, 100, 60, 50]], np.float64)
    result = photos.super_resolve_photo(photo, fake_sr, 16, 4, boxes)
    expected = reference_paste(photos.upscale(photo, 4), result.faces, 4 * result.crops)
    np.testing.assert_array_equal(result.image, expected)
    pasted = photos.paste_faces(photos.upscale(photo, 4), result.faces, 4 * result.crops)
    np.testing.assert_array_equal(pasted, expected)
    file = io.BytesIO()
    photos.write_enlarged_photo(file, photo, photos.PhotoFaces(result.boxes, result.crops, result.faces), 4)
    with Image.open(io.BytesIO(file.getvalue())) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(png), expected)


def traced_peak(fn, *args):
    """(fn(*args), the peak of memory traced while it ran, in bytes): numpy's arrays and
    Python's objects (PIL's own image buffers are not traced)."""
    tracemalloc.start()
    try:
        return fn(*args), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_photo_is_enlarged_in_memory_that_follows_the_photo_not_its_float_enlargement(tmp_path):
    photo = smooth_photo(1500, 1000)                                  # 4.5 MB; 4x: 72 MB uint8, 288 MB float32
    boxes = np.array([[100, 80, 150, 150], [600, 300, 120, 100], [380, 560, 100, 90], [40, 420, 100, 100]], np.float64)
    canvas_bytes = 16 * photo.nbytes

    result, peak = traced_peak(photos.super_resolve_photo, photo, fake_sr, 16, 4, boxes)
    assert result.image.dtype == np.uint8 and result.image.nbytes == canvas_bytes
    assert peak < 1.5 * canvas_bytes, f"{peak / 1e6:.0f} MB traced for a {canvas_bytes / 1e6:.0f} MB result"

    found = photos.PhotoFaces(result.boxes, result.crops, result.faces)
    with open(tmp_path / "photo.png", "wb") as file:
        _, peak = traced_peak(photos.write_enlarged_photo, file, photo, found, 4)
    assert peak < canvas_bytes / 2, f"{peak / 1e6:.0f} MB traced to write a {canvas_bytes / 1e6:.0f} MB photo"
    with Image.open(tmp_path / "photo.png") as png:
        np.testing.assert_array_equal(np.asarray(png), result.image)

    boxes, peak = traced_peak(photos.detect_faces, photo)             # the cascade reads a 2x enlargement
    assert len(boxes) == 0
    assert peak < 4 * photo.nbytes, f"{peak / 1e6:.0f} MB traced to search a {photo.nbytes / 1e6:.1f} MB photo"


def test_searching_the_largest_scales_one_at_a_time_finds_what_one_search_finds(load_faces, monkeypatch):
    photo = Image.fromarray(smooth_photo(200, 400))
    for i, face in enumerate(load_faces("train/HIGH", 5)):
        photo.paste(Image.fromarray(face).resize((30 + 10 * i, 30 + 10 * i), Image.BICUBIC), (10 + 75 * i, 30 + 20 * i))
    grey = cv2.cvtColor(photos.upscale(np.asarray(photo), 2), cv2.COLOR_RGB2GRAY)
    one_call = photos._cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
    assert len(one_call) >= 3
    monkeypatch.setattr(photos, "SCALE_PIXELS", grey.size // 20)   # the first ~16 scales one per call
    key = lambda boxes: sorted(map(tuple, np.asarray(boxes).tolist()))  # noqa: E731
    assert key(photos._search(grey, 40)) == key(one_call)
    np.testing.assert_array_equal(photos.detect_faces(np.asarray(photo)), np.array(key(one_call)) / 2)
