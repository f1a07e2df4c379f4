"""fsr_jax.data.images: decoding, normalisation and folder policies on real faces."""
import os
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


def png_header(width: int, height: int) -> bytes:
    """A PNG file that declares width x height (8-bit grayscale) but holds almost no pixel data:
    enough for PIL to read its size lazily, never decodable in full."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_oversized_image_is_refused_before_decoding_naming_the_file(tmp_path, face_files,
                                                                    monkeypatch):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(15000, 15000))  # over PIL's decompression-bomb limit too
    with pytest.raises(images.BadImageError, match=f"{huge}: too large: 225,000,000 pixels") as e:
        images.check_image(huge, 64, max_pixels=8192 * 8192)
    assert "data.max_image_pixels" in e.value.reason
    with pytest.raises(images.BadImageError, match=f"{huge}: too large"):  # PIL's limit, named
        images.read_image(huge)

    def no_decoding(self):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(images.BadImageError, match=r"too large: 4,096 pixels \(64x64\), over "
                       "data.max_image_pixels = 4,095"):
        images.check_image(face_files[0], 64, max_pixels=4095)


def intake_folder(root: pathlib.Path, face_files, monkeypatch) -> pathlib.Path:
    """4 good faces + an oversized image, a non-UTF-8 file name (byte 0xff), a dangling symbolic
    link and an unreadable file (PermissionError on open, simulated when running as root)."""
    root.mkdir()
    for f in face_files[:4]:
        shutil.copy(f, root / f.name)
    (root / "huge.png").write_bytes(png_header(15000, 15000))
    with open(os.path.join(os.fsencode(root), b"bad\xffname.png"), "wb") as f:
        f.write(face_files[4].read_bytes())
    (root / "link.png").symlink_to(root.parent / "nowhere.png")
    locked = root / "locked.png"
    shutil.copy(face_files[5], locked)
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads through mode 000: refuse it as chmod would
        real_open = os.open

        def refusing_open(path, *args, **kwargs):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(locked))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    return root


INTAKE_REASONS = {"huge.png": "too large: 225,000,000 pixels",
                  "bad\\xffname.png": "file name is not valid UTF-8",
                  "link.png": "dangling symbolic link",
                  "locked.png": "cannot read an image: Permission denied"}


def test_intake_errors_are_named_counted_and_skipped(tmp_path, face_files, monkeypatch):
    folder = intake_folder(tmp_path / "intake", face_files, monkeypatch)
    scan = images.scan_folder(folder, 64, on_bad_image="skip", max_pixels=8192 * 8192,
                              progress=False)
    assert sorted(p.name for p in scan.good) == sorted(f.name for f in face_files[:4])
    assert sorted(n for n, _ in scan.bad) == sorted(INTAKE_REASONS)
    for name, reason in scan.bad:
        assert INTAKE_REASONS[name] in reason
    assert "4 bad files skipped" in scan.summary()
    scan.summary().encode("utf-8")  # printable: no lone surrogates

    with pytest.raises(images.DataError) as e:
        images.scan_folder(folder, 64, on_bad_image="error", max_pixels=8192 * 8192,
                           progress=False)
    message = str(e.value)
    message.encode("utf-8")
    assert "4 bad image files" in message and "on_bad_image='skip'" in message
    lines = message.splitlines()
    assert len(lines) == 5
    for name, reason in INTAKE_REASONS.items():  # one line each: the path, then the reason
        assert any(line.startswith(f"  {folder / name}: ") and reason in line for line in lines)


def test_one_bad_file_is_one_line(tmp_path, face_files):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(face_files[0], folder / face_files[0].name)
    (folder / "link.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(images.DataError) as e:
        images.scan_folder(folder, 64, progress=False)
    assert str(e.value) == (f"bad image {folder / 'link.png'}: dangling symbolic link (to "
                            f"{tmp_path / 'gone.png'}) (set data.on_bad_image='skip' to skip it)")


def test_32_bit_integer_samples_are_scaled_not_clipped(tmp_path):
    samples = np.zeros((8, 8), np.int32)
    samples[1, 1], samples[2, 2], samples[3, 3] = 2**30, 2**31 - 1, -5
    cv2.imwrite(str(tmp_path / "deep.tif"), samples)
    decoded = images.read_image(tmp_path / "deep.tif")
    assert decoded.changes == ["32-bit I -> 8-bit RGB"]
    assert [int(decoded.pixels[k, k, 0]) for k in range(4)] == [0, round(2**30 * 255 / (2**31 - 1)), 255, 0]


@pytest.mark.parametrize("channels, dtype", [(4, np.uint8), (4, np.uint16), (3, np.uint16), (1, np.uint16)])
def test_block_conversion_equals_the_float_formula(channels, dtype):
    """`to_rgb8`'s integer arithmetic, block by block, against round(v / 257) and
    round(c * a / 255) in float64 over every 8-bit colour-alpha pair."""
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    samples = rng.integers(0, top + 1, (600, 256, channels), dtype=dtype).squeeze(-1) if channels == 1 else \
        rng.integers(0, top + 1, (600, 256, channels), dtype=dtype)
    if channels == 4 and dtype == np.uint8:   # every (colour, alpha) pair once
        samples[:256, :, 0], samples[:256, :, 3] = np.arange(256)[:, None], np.arange(256)[None, :]
    eight = np.round(samples.astype(np.float64) * 255 / top)
    eight = eight[..., None].repeat(3, -1) if channels == 1 else eight
    expected = np.round(eight[..., :3] * eight[..., 3:] / 255) if channels == 4 else eight
    np.testing.assert_array_equal(images.to_rgb8(samples), expected.astype(np.uint8))


def test_a_symbolic_link_loop_is_named_and_the_rest_of_the_folder_used(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    assert [p.name for p in images.list_folder(tmp_path).images] == ["a.png", "b.png", "good.png"]
    with pytest.raises(images.BadImageError, match="a.png: symbolic link loop"):
        images.read_image(tmp_path / "a.png")


@pytest.mark.parametrize("kind", ["rgba8", "rgba16"])
def test_decoding_costs_a_few_bytes_per_pixel_beyond_the_decoded_image(kind):
    """Peak memory added by decoding a 2000x2000 image in a fresh interpreter: the decoded
    samples (4 or 8 bytes a pixel) and the RGB result (3) and little else; about 85 before."""
    from tools import decode_memory  # noqa: PLC0415

    measured = decode_memory.measure(kind, 2000)
    assert measured["per_pixel"] < 14, measured
