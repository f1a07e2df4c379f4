"""fsr_jax.data.images: decoding, normalisation and folder policies on real faces."""
import pathlib
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from fsr_jax.data import images


@pytest.fixture(scope="module")
def face_files(faces_dir):
    return sorted((faces_dir / "train" / "HIGH").iterdir())[:6]


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_rgb_png_of_right_size_is_stored_bit_for_bit(face_files):
    checked = images.check_image(face_files[0], 64)
    assert checked.png == face_files[0].read_bytes()
    assert checked.changes == () and not checked.resized
    np.testing.assert_array_equal(checked.pixels, _rgb(face_files[0]))
    np.testing.assert_array_equal(images.decode_png(checked.png), _rgb(face_files[0]))


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_undecodable_files_raise_naming_the_file(tmp_path, face_files, kind):
    path = tmp_path / f"{kind}.png"
    data = face_files[0].read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "text": b"hello, not a png\n",
                      "empty": b""}[kind])
    with pytest.raises(images.BadImageError, match=str(path)):
        images.check_image(path, 64)


def test_modes_become_8_bit_rgb(tmp_path, face_files):
    rgb = _rgb(face_files[1])
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    checked = images.check_image(tmp_path / "grey.png", 64)
    np.testing.assert_array_equal(checked.pixels, np.repeat(grey[..., None], 3, -1))
    assert checked.changes == ("mode L -> RGB",)

    alpha = np.full((64, 64, 1), 128, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(tmp_path / "rgba.png")
    checked = images.check_image(tmp_path / "rgba.png", 64)
    expected = np.round(rgb.astype(np.float64) * 128 / 255).astype(np.uint8)
    np.testing.assert_array_equal(checked.pixels, expected)
    assert "alpha composited onto black" in checked.changes[0]

    palette_image = Image.fromarray(rgb).quantize(colors=32)
    palette_image.save(tmp_path / "palette.png")
    table = np.asarray(palette_image.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    checked = images.check_image(tmp_path / "palette.png", 64)
    np.testing.assert_array_equal(checked.pixels, table[np.asarray(palette_image)])
    assert checked.changes == ("mode P -> RGB",)


def test_16_bit_grey_and_rgb_are_rounded_to_8_bit(tmp_path):
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (64, 64, 3), dtype=np.uint16)
    grey16 = rng.integers(0, 65536, (64, 64), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])
    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    checked = images.check_image(tmp_path / "rgb16.png", 64)
    np.testing.assert_array_equal(checked.pixels, np.round(rgb16 / 257).astype(np.uint8))
    assert checked.changes[0].startswith("16-bit")
    checked = images.check_image(tmp_path / "grey16.png", 64)
    expected = np.round(grey16 / 257).astype(np.uint8)
    np.testing.assert_array_equal(checked.pixels, np.repeat(expected[..., None], 3, -1))


def test_other_sizes_are_resized_with_pil_bicubic(tmp_path, face_files):
    rgb = _rgb(face_files[2])
    big = Image.fromarray(rgb).resize((80, 72), Image.NEAREST)
    big.save(tmp_path / "big.jpg", quality=95)
    checked = images.check_image(tmp_path / "big.jpg", 64)
    decoded = Image.open(tmp_path / "big.jpg").convert("RGB")
    np.testing.assert_array_equal(checked.pixels,
                                  np.asarray(decoded.resize((64, 64), Image.BICUBIC)))
    assert checked.resized and checked.changes == ("resized 80x72 -> 64x64",)


def _mixed_folder(root: pathlib.Path, face_files) -> pathlib.Path:
    """4 good faces, a truncated PNG, a text file named .png, an empty .png, a 32x32 face and
    two non-image entries."""
    root.mkdir()
    for f in face_files[:4]:
        shutil.copy(f, root / f.name)
    data = face_files[4].read_bytes()
    (root / "truncated.png").write_bytes(data[:100])
    (root / "notes.png").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    Image.open(face_files[5]).resize((32, 32)).save(root / "small.png")
    (root / "README.txt").write_text("hello")
    (root / "sub").mkdir()
    return root


def test_scan_error_lists_every_bad_file(tmp_path, face_files):
    folder = _mixed_folder(tmp_path / "mixed", face_files)
    with pytest.raises(images.DataError) as e:
        images.scan_folder(folder, 64, on_bad_image="error", progress=False)
    for name in ("truncated.png", "notes.png", "empty.png"):
        assert name in str(e.value)
    assert "small.png" not in str(e.value)


def test_scan_skip_counts_bad_ignored_and_resized(tmp_path, face_files):
    folder = _mixed_folder(tmp_path / "mixed", face_files)
    scan = images.scan_folder(folder, 64, on_bad_image="skip", progress=False)
    assert sorted(p.name for p in scan.good) == sorted([f.name for f in face_files[:4]]
                                                       + ["small.png"])
    assert sorted(n for n, _ in scan.bad) == ["empty.png", "notes.png", "truncated.png"]
    assert sorted(scan.ignored) == ["README.txt", "sub"]
    assert scan.resized == ("small.png",)
    assert scan.changes == {"resized to 64x64": 1}
    summary = scan.summary()
    assert "5 images kept" in summary and "3 bad files skipped" in summary
    assert "2 non-image entries ignored" in summary and "1 x resized to 64x64" in summary


def test_scan_wrong_size_error_lists_files(tmp_path, face_files):
    folder = _mixed_folder(tmp_path / "mixed", face_files)
    with pytest.raises(images.DataError, match="small.png"):
        images.scan_folder(folder, 64, on_bad_image="skip", on_wrong_size="error",
                           progress=False)


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(images.DataError, match=str(tmp_path / "absent")):
        images.scan_folder(tmp_path / "absent", 64, progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "list.csv").write_text("a,b")
    with pytest.raises(images.DataError, match=f"{tmp_path / 'empty'} holds no image"):
        images.scan_folder(tmp_path / "empty", 64, progress=False)
