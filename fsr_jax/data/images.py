"""Checked reading of face image files: decode, normalise to 8-bit RGB, fit to size.

Every image that enters a prepared dataset passes through `check_image`. It returns uint8
RGB pixels of shape (size, size, 3) in [0, 255] and the list of changes it made (mode
conversion, 16-bit reduction, EXIF rotation, resize), so that callers can count and log them;
a file that cannot be stored (undecodable, unreadable, a dangling link, a file name that is
not UTF-8, more pixels than allowed) raises `BadImageError` naming it and the reason. `scan_folder` applies
the config's policies (`on_bad_image`, `on_wrong_size`) to a whole folder before anything is
written, so an `error` policy stops with every offending file listed at once.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import io
import os
import pathlib
import re
import warnings
from typing import NamedTuple

import cv2
import numpy as np
import tqdm
from PIL import Image, ImageOps, UnidentifiedImageError

from fsr_jax import files
from fsr_jax.data.config import ON_BAD_IMAGE, ON_WRONG_SIZE
from fsr_jax.errors import FileReadError, FsrJaxError

# File name extensions read as images (lower case); any other file is ignored and counted.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)
_EXIF_ORIENTATION = 0x0112


def printable(path: os.PathLike | str) -> str:
    """`path` as text that can be printed and stored: bytes of a file name that are not UTF-8
    (which Python keeps as lone surrogates) are shown as escapes such as \\xff."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """Whether a file name (as os.listdir gives it) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BadImageError(FsrJaxError, ValueError):
    """A file with an image extension that cannot be stored: the message is '<path>: <reason>'."""

    def __init__(self, path: os.PathLike | str, reason: str):
        super().__init__(f"{printable(path)}: {reason}")
        self.path = printable(path)
        self.reason = reason


class DataError(FsrJaxError, ValueError):
    """A folder or its contents cannot be used as configured; the message names them."""


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    """One image as it will be stored.

    Attributes:
      pixels: uint8 (size, size, 3) RGB in [0, 255].
      png: PNG encoding of `pixels`; the file's own bytes when it was already an 8-bit RGB
        PNG of the right size (so stored pixels equal the file's bit for bit).
      changes: what was done to the file's pixels, e.g. ("mode P -> RGB", "resized 48x40 ->
        64x64"); empty when nothing was.
      resized: whether the size was changed.
    """

    pixels: np.ndarray
    png: bytes
    changes: tuple[str, ...]
    resized: bool


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of uint8 (H, W, 3) RGB pixels (lossless)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels[..., ::-1]))
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {pixels.shape}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of PNG bytes written by `encode_png` or `check_image`."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not decodable PNG bytes")
    return np.ascontiguousarray(bgr[..., ::-1])


def _is_deep(image: Image.Image) -> bool:
    """Whether the image has 16 or 32 bits per integer sample (PIL's decoder would reduce or
    keep them in a mode `_to_rgb` cannot convert faithfully)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return True
    return any(";16" in str(tile.args) for tile in image.tile)


#: Rows converted at a time, so that a conversion's temporaries stay a small share of the image.
_ROWS = 256


def _rows_to_rgb8(rows: np.ndarray, bgr: bool) -> np.ndarray:
    """uint8 (r, W, 3) RGB of integer (r, W), (r, W, 3) or (r, W, 4) samples (B, G, R order
    when `bgr`): scaled to 8 bits as round(v * 255 / m), m the dtype's largest value (for
    uint16 round(v / 257), computed exactly in integers; negative values are 0), then alpha
    composited onto black as round(c * a / 255) (exactly, in integers: no ties can occur)."""
    if rows.dtype == np.uint16:
        rows = ((rows.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif rows.dtype != np.uint8:
        top = np.iinfo(rows.dtype).max
        rows = np.round(np.clip(rows.astype(np.float64), 0, top) * (255.0 / top)).astype(np.uint8)
    if rows.ndim == 2:
        return np.repeat(rows[..., None], 3, axis=-1)
    rgb = rows[..., 2::-1] if bgr else rows[..., :3]
    if rows.shape[-1] == 4:
        return ((rgb.astype(np.uint16) * rows[..., 3:] + 127) // 255).astype(np.uint8)
    return rgb


def to_rgb8(samples: np.ndarray, bgr: bool = False) -> np.ndarray:
    """uint8 (H, W, 3) RGB of integer gray, RGB(A) or BGR(A) samples (`_rows_to_rgb8`),
    converted a block of rows at a time: beyond the input and the output, a conversion holds
    a few bytes per pixel of one block only."""
    out = np.empty((*samples.shape[:2], 3), np.uint8)
    for top in range(0, len(samples), _ROWS):
        out[top:top + _ROWS] = _rows_to_rgb8(samples[top:top + _ROWS], bgr)
    return out


def _from_deep(data: bytes, path: str) -> tuple[np.ndarray, int]:
    """(uint8 (H, W, 3) RGB, bits per sample) of a file of 16- or 32-bit integer samples
    (`to_rgb8`: for 16 bits each sample v becomes round(v / 257)); alpha, if any, composited
    onto black after the reduction."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise BadImageError(path, "16- or 32-bit image OpenCV cannot decode")
    if not np.issubdtype(array.dtype, np.integer):
        raise BadImageError(path, f"{array.dtype} samples are not supported (integer samples only)")
    return to_rgb8(array, bgr=array.ndim == 3), 8 * array.dtype.itemsize


def _to_rgb(image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """uint8 (H, W, 3) RGB of an 8-bit PIL image and the conversions made."""
    changes = []
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
        changes.append(f"mode {image.mode} -> RGB (alpha composited onto black)")
        return to_rgb8(rgba), changes
    if image.mode != "RGB":
        changes.append(f"mode {image.mode} -> RGB")
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8), changes


def resize_bicubic(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 (size, size, 3): PIL's antialiased bicubic resize of uint8 (H, W, 3) RGB pixels."""
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BICUBIC))


class DecodedImage(NamedTuple):
    """A decoded file: uint8 (H, W, 3) RGB `pixels` in [0, 255], the `changes` made (as in
    `CheckedImage.changes`), the file's `format` (e.g. 'PNG') and its bytes (`data`)."""

    pixels: np.ndarray
    changes: list[str]
    format: str | None
    data: bytes


def _read_bytes(path: str, max_pixels: int | None) -> bytes:
    """The bytes of a regular file, its size checked first (at most 8 bytes a pixel of
    `max_pixels` plus 1 MiB, more than any encoding of such an image needs; 2 GiB without);
    BadImageError naming it when it cannot be read or is refused."""
    limit = 2**31 if max_pixels is None else 8 * max_pixels + 2**20
    if not os.path.exists(path) and os.path.islink(path):
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BadImageError(path, "symbolic link loop") from None
        raise BadImageError(path, f"dangling symbolic link (to {printable(os.readlink(path))})")
    try:
        return files.read_bytes(path, limit, "an image")
    except FileReadError as e:
        raise BadImageError(path, str(e).removeprefix(f"{path}: ")) from None


def _open(data: bytes, max_pixels: int | None) -> Image.Image:
    """PIL's lazy image of `data` (header read, pixels not decoded). With `max_pixels`, PIL's
    own decompression-bomb limit is raised to it if lower (the caller checks `image.size`);
    PIL still refuses over twice its limit while opening (DecompressionBombError)."""
    if max_pixels is not None and Image.MAX_IMAGE_PIXELS is not None:
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def read_image(path: os.PathLike | str, max_pixels: int | None = None) -> DecodedImage:
    """Decodes one image file at its own size into uint8 (H, W, 3) RGB in [0, 255].

    Grayscale, palette, CMYK and other 8-bit modes are converted with PIL; alpha is composited
    onto black; 16-bit samples v become round(v / 257); JPEG EXIF orientation is applied.
    With `max_pixels`, an image of more pixels (width x height, read from the file's header)
    is refused before its pixels are decoded; without it, PIL's own limit applies.

    Raises:
      BadImageError: naming the file and the reason, when it is empty, truncated, not an
        image at all, too large, unreadable, or a dangling symbolic link.
    """
    path = str(path)
    data = _read_bytes(path, max_pixels)
    if not data:
        raise BadImageError(path, "empty file")
    try:
        image = _open(data, max_pixels)
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise BadImageError(path, f"too large: {width * height:,} pixels ({width}x{height}),"
                                      f" over data.max_image_pixels = {max_pixels:,}")
        image_format = image.format
        if image.mode == "F":
            raise BadImageError(path, "32-bit float images are not supported")
        changes = []
        if _is_deep(image):  # decoded by OpenCV alone: PIL's copy would cost 4 bytes a pixel more
            pixels, bits = _from_deep(data, path)
            changes.append(f"{bits}-bit {image.mode} -> 8-bit RGB")
        else:
            image.load()
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
                changes.append(f"EXIF orientation {orientation} applied")
            pixels, mode_changes = _to_rgb(image)
            changes.extend(mode_changes)
    except Image.DecompressionBombError as e:  # over PIL's own limit, refused while opening
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        over = "" if max_pixels is None else f", over data.max_image_pixels = {max_pixels:,}"
        raise BadImageError(path, f"too large: {int(pixels[1]):,} pixels{over}" if pixels
                            else f"too large: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, BadImageError):
            raise
        raise BadImageError(path, f"not a decodable image ({type(e).__name__}: {e})") from None
    return DecodedImage(pixels, changes, image_format, data)


def check_image(path: os.PathLike | str, size: int, max_pixels: int | None = None
                ) -> CheckedImage:
    """Decodes one image file (`read_image`) and normalises it to uint8 (size, size, 3) RGB.

    Any other size is resized to size x size with PIL bicubic (aspect ratio not kept); this,
    like every conversion `read_image` makes, is listed in `changes`.

    Raises:
      BadImageError: naming the file and the reason (as `read_image`), or when its file name
        is not UTF-8 (it could not be stored as the record's name).
    """
    if not is_utf8(os.path.basename(os.fspath(path))):
        raise BadImageError(path, "file name is not valid UTF-8 (rename the file)")
    pixels, changes, image_format, data = read_image(path, max_pixels)
    height, width = pixels.shape[:2]
    resized = (height, width) != (size, size)
    if resized:
        pixels = resize_bicubic(pixels, size)
        changes.append(f"resized {width}x{height} -> {size}x{size}")
    if not changes and image_format == "PNG":
        png = data
    else:
        png = encode_png(pixels)
    return CheckedImage(pixels=pixels, png=png, changes=tuple(changes), resized=resized)


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The top level of a folder: image files (sorted by name) and everything else."""

    folder: pathlib.Path
    images: tuple[pathlib.Path, ...]
    ignored: tuple[str, ...]


def list_folder(folder: os.PathLike | str) -> FolderListing:
    """Lists a folder's image files by extension; other entries (and sub-folders) are ignored.

    A symbolic link with an image extension is listed even when it is dangling or part of a
    loop (so that the folder check names it).

    Raises:
      DataError: naming the folder, when it is missing, not a folder, or holds no image file.
    """
    folder = pathlib.Path(folder).expanduser()
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    images, ignored = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        dangling = entry.is_symlink() and not os.path.exists(entry.path)
        is_image = ((dangling or entry.is_file())
                    and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS)
        (images if is_image else ignored).append(entry.name)
    if not images:
        raise DataError(
            f"image folder {folder} holds no image file (extensions {sorted(IMAGE_EXTENSIONS)}); "
            f"{len(ignored)} other entries"
        )
    return FolderListing(folder, tuple(folder / n for n in images), tuple(ignored))


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """A checked folder: what will be stored and what was dropped or changed.

    Attributes:
      folder: the folder.
      good: the image files that will be stored, sorted by name.
      bad: (file name, reason) of files that cannot be stored (skipped): not decodable,
        unreadable, dangling links, too large, file names that are not UTF-8. Names are
        `printable` (bytes that are not UTF-8 shown as escapes).
      ignored: names of entries without an image extension.
      resized: names of files that were resized.
      changes: count of each kind of change, e.g. {"mode L -> RGB": 3}.
    """

    folder: pathlib.Path
    good: tuple[pathlib.Path, ...]
    bad: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...]
    resized: tuple[str, ...]
    changes: dict[str, int]

    def summary(self) -> str:
        """One log line: counts of stored, skipped, ignored and changed files."""
        parts = [f"{self.folder}: {len(self.good)} images kept"]
        if self.bad:
            names = ", ".join(n for n, _ in self.bad[:5]) + (", ..." if len(self.bad) > 5 else "")
            parts.append(f"{len(self.bad)} bad files skipped ({names})")
        if self.ignored:
            parts.append(f"{len(self.ignored)} non-image entries ignored")
        for change, count in sorted(self.changes.items()):
            parts.append(f"{count} x {change}")
        return "; ".join(parts)


def _change_kind(change: str) -> str:
    """The kind of a change for counting, e.g. 'resized 48x40 -> 64x64' -> 'resized to 64x64'."""
    if change.startswith("resized"):
        return "resized to " + change.rsplit("-> ", 1)[1]
    return change


def scan_folder(
    folder: os.PathLike | str,
    size: int,
    *,
    on_bad_image: str = "error",
    on_wrong_size: str = "resize",
    max_pixels: int | None = None,
    progress: bool = True,
    bar: tqdm.tqdm | None = None,
) -> FolderScan:
    """Checks every image of a folder against the policies before anything is stored.

    Args:
      folder: a folder of image files (top level only).
      size: the side every image must have (or is resized to).
      on_bad_image: 'error' raises naming every bad file (`BadImageError`: path and reason);
        'skip' drops and counts them.
      on_wrong_size: 'resize' resizes (counted); 'error' raises listing every wrong-sized file.
      max_pixels: images with more pixels are bad images (see `read_image`); None: PIL's limit.
      progress: show a progress bar of its own (when `bar` is None).
      bar: a progress bar to advance instead (the caller's one bar for a whole preparation):
        reset to this folder's image count, with the postfix 'checking <folder name>'.

    Raises:
      DataError: missing/empty folder, or a policy of 'error' met an offending file.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
    if on_wrong_size not in ON_WRONG_SIZE:
        raise ValueError(f"on_wrong_size must be one of {ON_WRONG_SIZE}, got {on_wrong_size!r}")
    listing = list_folder(folder)
    good, bad, resized, changes = [], [], [], collections.Counter()
    own_bar = bar is None
    if own_bar:
        bar = tqdm.tqdm(desc=f"checking {listing.folder}", unit=" images",
                        disable=not progress, leave=False)
    bar.reset(total=len(listing.images))
    bar.set_postfix_str(f"checking {listing.folder.name}")
    try:
        for path in listing.images:
            bar.update()
            try:
                checked = check_image(path, size, max_pixels)
            except BadImageError as e:
                bad.append((printable(path.name), e.reason))
                continue
            good.append(path)
            if checked.resized:
                resized.append(path.name)
            changes.update(_change_kind(c) for c in checked.changes)
    finally:
        if own_bar:
            bar.close()
    if bad and on_bad_image == "error":
        hint = "(set data.on_bad_image='skip' to skip {})"
        if len(bad) == 1:
            name, reason = bad[0]
            raise DataError(f"bad image {printable(listing.folder / name)}: {reason} "
                            + hint.format("it"))
        raise DataError(
            f"{len(bad)} bad image files in {printable(listing.folder)} "
            + hint.format("them") + ":\n"
            + "\n".join(f"  {printable(listing.folder / name)}: {reason}" for name, reason in bad)
        )
    if resized and on_wrong_size == "error":
        raise DataError(
            f"{len(resized)} images in {listing.folder} are not {size}x{size} "
            "(set data.on_wrong_size='resize' to resize them with PIL bicubic):\n"
            + "\n".join(f"  {name}" for name in resized)
        )
    if not good:
        raise DataError(f"image folder {listing.folder} holds no decodable image")
    return FolderScan(listing.folder, tuple(good), tuple(bad), listing.ignored, tuple(resized),
                      dict(changes))

