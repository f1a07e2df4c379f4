"""Faces in whole photos: find them (OpenCV's Haar cascade here; the MTCNN detector is
fsr_jax.face_detector), cut them out at the SR input size,
and paste super-resolved faces back into an enlarged photo with a feathered blend.

Boxes are float (K, 4) arrays of [x, y, width, height] in pixels of the photo they refer to.
Photos are uint8 (H, W, 3) RGB in [0, 255]. The cascade reliably finds frontal faces from
about 20 px in the original photo (the photo is enlarged 2x first; the cascade's window is 24 px).

Memory follows the photo, not its enlargements: the enlarged photos are made STRIP_ROWS rows at
a time (PIL bicubic, the same pixels as one resize of the whole) and kept as uint8; a face is
resized to its box in uint8 while the strips it covers are made, and blended in float32 over
those strips' rows and the columns it covers only. `write_enlarged_photo` streams the enlarged
photo with its faces into a PNG strip by strip, so a 5000x5000 photo (a 20000x20000 result, 1.2
GB in uint8) is done in well under 1 GB; `super_resolve_photo` returns the whole uint8 result.
"""
from __future__ import annotations

import functools
import struct
import zlib
from typing import BinaryIO, Callable, Iterator, NamedTuple

import cv2
import numpy as np
from PIL import Image

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_SCALE = 2      # the photo is enlarged this much (PIL bicubic) before detection
MIN_FACE = 20         # smallest face searched for, in pixels of the original photo
MARGIN = 1.3          # Decision: Haar boxes hug eyes-to-mouth; training faces show the whole head
FEATHER = 0.15        # width of the blend ramp at a pasted face's border, as a share of its side
STRIP_ROWS = 256      # rows of an enlarged photo made (and blended, and written) at a time
SCALE_PIXELS = 1 << 22  # the cascade searches the scales of a larger image one at a time
PNG_LEVEL = 1         # zlib level of streamed PNGs: level 6 takes minutes on a 20000x20000 photo


def upscale(photo: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (factor*H, factor*W, 3) by PIL bicubic."""
    height, width = photo.shape[:2]
    return np.asarray(Image.fromarray(photo).resize((factor * width, factor * height), Image.BICUBIC))


def upscale_strips(photo: np.ndarray, factor: int, rows: int = STRIP_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """`upscale(photo, factor)` in strips, top to bottom: (first row, uint8 (r, factor*W, 3)) with
    r <= `rows`; the strips stacked equal `upscale` exactly. PIL's whole-image resize runs a
    horizontal pass, rounds to 8 bits, then a vertical pass; so does each strip: the horizontal
    pass over the photo rows its vertical pass reads (bicubic reads 2 rows either side), then the
    vertical pass over that band with the strip's box."""
    height, width = photo.shape[:2]
    if factor == 1:  # the photo itself
        yield from ((y0, photo[y0:y0 + rows]) for y0 in range(0, height, rows))
        return
    for y0 in range(0, factor * height, rows):
        y1 = min(factor * height, y0 + rows)
        top, bottom = max(0, y0 // factor - 3), min(height, -(-y1 // factor) + 3)
        band = Image.fromarray(photo[top:bottom]).resize((factor * width, bottom - top), Image.BICUBIC)
        box = (0, y0 / factor - top, factor * width, y1 / factor - top)
        yield y0, np.asarray(band.resize((factor * width, y1 - y0), Image.BICUBIC, box=box))


@functools.lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + CASCADE_FILE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"cannot load OpenCV's Haar cascade {path}")
    return cascade


def _search(grey: np.ndarray, min_side: int) -> np.ndarray:
    """The cascade's detectMultiScale(grey, scaleFactor 1.1, minNeighbors 5, minSize min_side):
    int (K, 4) boxes. OpenCV builds the images and sums of all the scales it searches at once
    (some 15 bytes per pixel of `grey`: 1.5 GB for 10000x10000), so each scale whose image is
    over SCALE_PIXELS is searched alone (minSize = maxSize = its window) and the rest in one
    call, all without grouping; the candidates are then grouped as detectMultiScale groups them
    (groupRectangles, eps 0.2): the same boxes as one call."""
    cascade = _cascade()
    base = cascade.getOriginalWindowSize()[0]
    height, width = grey.shape
    candidates = []
    factor = 1.0
    while True:
        window = round(base * factor)          # OpenCV's scales: factor 1.1^k, window cvRound(24 factor)
        if window >= min_side:
            if (width / factor) * (height / factor) <= SCALE_PIXELS:
                break
            candidates.append(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=0,
                                                       minSize=(window, window), maxSize=(window, window)))
        factor *= 1.1
    candidates.append(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=0, minSize=(window, window)))
    found = np.concatenate([np.asarray(c, np.int32).reshape(-1, 4) for c in candidates])
    grouped, _ = cv2.groupRectangles(found.tolist(), 5, 0.2)
    return np.asarray(grouped, np.int32).reshape(-1, 4)


def detect_faces(photo: np.ndarray, min_face: int = MIN_FACE, scale: int = DETECT_SCALE) -> np.ndarray:
    """Frontal faces of a photo: float (K, 4) boxes [x, y, w, h] in the photo's pixels, sorted
    top to bottom then left to right. The photo is enlarged `scale`x (PIL bicubic) and searched
    for faces of at least `min_face` original pixels (Haar cascade, scaleFactor 1.1, 5 neighbours).
    Memory: the enlarged photo in grey (uint8, made strip by strip) and OpenCV's search."""
    height, width = photo.shape[:2]
    grey = np.empty((scale * height, scale * width), np.uint8)
    for y0, strip in upscale_strips(photo, scale):
        grey[y0:y0 + len(strip)] = cv2.cvtColor(strip, cv2.COLOR_RGB2GRAY)
    boxes = _search(grey, min_face * scale).astype(np.float64) / scale
    return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def square_boxes(boxes: np.ndarray, height: int, width: int, margin: float = MARGIN) -> np.ndarray:
    """Boxes grown to squares of `margin` x their longer side about their centres, then moved
    (and, if larger than the photo, shrunk) to lie inside a height x width photo: float (K, 4)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.minimum(margin * boxes[:, 2:].max(axis=1), min(height, width))
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    x0 = np.clip(centre[:, 0] - side / 2, 0, width - side)
    y0 = np.clip(centre[:, 1] - side / 2, 0, height - side)
    return np.stack([x0, y0, side, side], axis=1)


def crop_faces(photo: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The photo inside each box, resized to size x size by PIL bicubic: uint8 (K, size, size, 3)."""
    image = Image.fromarray(photo)
    crops = [np.asarray(image.resize((size, size), Image.BICUBIC, box=(x, y, x + w, y + h)))
             for x, y, w, h in np.asarray(boxes, np.float64).reshape(-1, 4)]
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def feather_mask(height: int, width: int, feather: float = FEATHER, rows: slice = slice(None)) -> np.ndarray:
    """float32 (height, width) blend weights in (0, 1]: 1 inside, ramping linearly down over the
    outer max(1, feather * min(height, width)) pixels, so every pixel of the box gets some weight.
    `rows`: only those rows of it (the same values)."""
    ramp = max(1, round(feather * min(height, width)))
    y = np.minimum(np.arange(height), np.arange(height)[::-1])[rows, None]
    x = np.minimum(np.arange(width), np.arange(width)[::-1])[None, :]
    return np.minimum(1.0, (np.minimum(x, y) + 1) / (ramp + 1)).astype(np.float32)


def _corners(boxes: np.ndarray) -> np.ndarray:
    """int (K, 4) [x0, y0, x1, y1]: the boxes' corners rounded to whole pixels."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.rint(np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)).astype(int)


class _Blender:
    """Blends faces into the strips of a canvas, top to bottom. Each face is resized to its box
    (PIL bicubic, uint8) when the first strip it covers comes and dropped after its last one;
    its float32 pixels and feather weights are made for one strip's rows at a time."""

    def __init__(self, faces: np.ndarray, boxes: np.ndarray, feather: float):
        self.faces, self.corners, self.feather = faces, _corners(boxes), feather
        self.resized: dict[int, np.ndarray] = {}

    def _resized(self, k: int) -> np.ndarray:
        if k not in self.resized:
            x0, y0, x1, y1 = self.corners[k]
            self.resized[k] = np.asarray(Image.fromarray(self.faces[k]).resize((x1 - x0, y1 - y0), Image.BICUBIC))
        return self.resized[k]

    def __call__(self, strip: np.ndarray, top: int) -> None:
        """Blends, in place, the faces into uint8 `strip`: rows top .. top + len(strip) of the canvas."""
        bottom = top + len(strip)
        for k in [k for k in self.resized if self.corners[k, 3] <= top]:
            del self.resized[k]
        meeting = [k for k, (_, y0, _, y1) in enumerate(self.corners) if y0 < bottom and y1 > top]
        for group in _overlapping(meeting, self.corners):
            self._blend(strip, top, group)

    def _blend(self, strip: np.ndarray, top: int, group: list[int]) -> None:
        # float32 over the group's columns of this strip only; faces blend in order, each over
        # the unrounded result of the ones before (m * face + (1 - m) * below, in float32), and
        # the whole is rounded once
        bottom = top + len(strip)
        left, right = self.corners[group, 0].min(), self.corners[group, 2].max()
        region = strip[:, left:right].astype(np.float32)
        for k in group:
            x0, y0, x1, y1 = self.corners[k]
            a, b = max(y0, top), min(y1, bottom)
            face = self._resized(k)[a - y0:b - y0].astype(np.float32)
            mask = feather_mask(y1 - y0, x1 - x0, self.feather, slice(a - y0, b - y0))[..., None]
            below = region[a - top:b - top, x0 - left:x1 - left]
            np.multiply(face, mask, out=face)
            np.multiply(below, 1.0 - mask, out=below)
            np.add(below, face, out=below)
        np.rint(region, out=region)
        np.clip(region, 0, 255, out=region)
        strip[:, left:right] = region


def _overlapping(faces: list[int], corners: np.ndarray) -> list[list[int]]:
    """`faces` in groups whose column spans overlap (chained), each group in the given order."""
    groups: list[list[int]] = []
    end = None
    for k in sorted(faces, key=lambda k: corners[k, 0]):
        if end is None or corners[k, 0] >= end:
            groups.append([k])
            end = corners[k, 2]
        else:
            groups[-1].append(k)
            end = max(end, corners[k, 2])
    return [sorted(group) for group in groups]


def paste_faces(canvas: np.ndarray, faces: np.ndarray, boxes: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """Blends each face (uint8 (K, S, S, 3)), resized by PIL bicubic to its box, into a copy of
    `canvas` (uint8 (H, W, 3)) with `feather_mask` weights; boxes are in canvas pixels, inside
    the canvas, their corners rounded to whole pixels. Pixels outside every box are left exactly
    as they were. Works STRIP_ROWS rows at a time: no float copy of the canvas is made."""
    out = canvas.copy()
    blend = _Blender(faces, boxes, feather)
    for top in range(0, len(out), STRIP_ROWS):
        blend(out[top:top + STRIP_ROWS], top)
    return out


def enlarged_strips(photo: np.ndarray, faces: np.ndarray, boxes: np.ndarray, scale: int,
                    feather: float = FEATHER, rows: int = STRIP_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """`paste_faces(upscale(photo, scale), faces, boxes, feather)` in strips of at most `rows`
    rows, top to bottom: (first row, uint8 (r, scale*W, 3)); `boxes` in pixels of the enlarged
    photo. The strips stacked are exactly that image; only one strip is held at a time."""
    blend = _Blender(faces, boxes, feather)
    for top, strip in upscale_strips(photo, scale, rows):
        strip = np.array(strip)  # writable
        blend(strip, top)
        yield top, strip


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_strips(file: BinaryIO, width: int, height: int, strips: Iterator[np.ndarray],
                     level: int = PNG_LEVEL) -> None:
    """Writes an 8-bit RGB PNG of `height` rows from uint8 (r, width, 3) strips given top to
    bottom, one strip in memory at a time (rows Up-filtered, one zlib stream at `level`)."""
    file.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
    compress = zlib.compressobj(level)
    above = np.zeros(3 * width, np.uint8)
    written = 0
    for strip in strips:
        pixels = np.ascontiguousarray(strip, np.uint8).reshape(len(strip), 3 * width)
        filtered = np.empty((len(pixels), 1 + 3 * width), np.uint8)
        filtered[:, 0] = 2                                       # PNG filter type 2, Up
        np.subtract(pixels[:1], above, out=filtered[:1, 1:])
        np.subtract(pixels[1:], pixels[:-1], out=filtered[1:, 1:])
        above = pixels[-1].copy()
        written += len(pixels)
        data = compress.compress(filtered)
        if data:
            file.write(_png_chunk(b"IDAT", data))
    if written != height:
        raise ValueError(f"PNG of {height} rows given {written} rows")
    file.write(_png_chunk(b"IDAT", compress.flush()) + _png_chunk(b"IEND", b""))


class PhotoFaces(NamedTuple):
    """The faces of a photo: `boxes` float (K, 4) the faces found (or given), `crops` float
    (K, 4) their squares, both in pixels of the photo; `enhanced` bool (K,) which crops were
    super-resolved (None: all); `faces` uint8 (J, S, S, 3) the SR faces of those J crops."""

    boxes: np.ndarray
    crops: np.ndarray
    faces: np.ndarray
    enhanced: np.ndarray | None = None

    def pasted(self) -> np.ndarray:
        """float (J, 4): the crops whose SR faces are pasted back, in `faces`' order."""
        return self.crops if self.enhanced is None else self.crops[self.enhanced]


class PhotoResult(NamedTuple):
    """A super-resolved photo: `image` uint8 (scale*H, scale*W, 3); `boxes` float (K, 4) the
    faces found (or given), `crops` float (K, 4) their squares, both in pixels of the original
    photo; `faces` uint8 (J, S, S, 3) the SR faces pasted back, of the crops `enhanced` marks."""

    image: np.ndarray
    boxes: np.ndarray
    crops: np.ndarray
    faces: np.ndarray
    enhanced: np.ndarray | None = None


Detector = Callable[[np.ndarray], np.ndarray]


def super_resolve_faces(photo: np.ndarray, sr_fn: Callable[[np.ndarray], np.ndarray], lr_size: int,
                        scale: int, boxes: np.ndarray | None = None, margin: float = MARGIN,
                        max_face: float | None = None, detect: Detector = detect_faces) -> PhotoFaces:
    """The faces `boxes` gives, else those `detect` finds (uint8 photo -> float (K, 4) boxes;
    default the Haar cascade), cut out of a uint8 (H, W, 3)
    photo as `square_boxes` at lr_size x lr_size and put through `sr_fn` (uint8 (J, lr, lr, 3)
    -> uint8 (J, S, S, 3)); `scale` is sr_fn's factor S / lr. With `max_face`, a crop of a
    larger side (photo pixels) is left as it is (`enhanced` False): shrinking it to lr_size
    would throw away more detail than the network puts back."""
    height, width = photo.shape[:2]
    boxes = detect(photo) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    crops = square_boxes(boxes, height, width, margin)
    enhanced = np.ones(len(crops), bool) if max_face is None else crops[:, 2] <= max_face
    lr = crop_faces(photo, crops[enhanced], lr_size)
    faces = sr_fn(lr) if len(lr) else np.zeros((0, scale * lr_size, scale * lr_size, 3), np.uint8)
    return PhotoFaces(boxes, crops, faces, enhanced)


def write_enlarged_photo(file: BinaryIO, photo: np.ndarray, found: PhotoFaces, scale: int,
                         feather: float = FEATHER, level: int = PNG_LEVEL) -> None:
    """Writes `super_resolve_photo`'s image as a PNG, strip by strip: the photo enlarged `scale`x
    (PIL bicubic; 1: the photo itself) with `found`'s SR faces pasted back, resized to their
    crops, without holding the enlarged photo."""
    height, width = photo.shape[:2]
    strips = (strip for _, strip in enlarged_strips(photo, found.faces, found.pasted() * scale, scale, feather))
    write_png_strips(file, scale * width, scale * height, strips, level)


def super_resolve_photo(photo: np.ndarray, sr_fn: Callable[[np.ndarray], np.ndarray], lr_size: int,
                        scale: int, boxes: np.ndarray | None = None, margin: float = MARGIN,
                        feather: float = FEATHER, max_face: float | None = None,
                        detect: Detector = detect_faces) -> PhotoResult:
    """Enlarges a uint8 (H, W, 3) photo `scale`x with PIL bicubic and replaces each face by its
    super-resolved version: the faces `boxes` gives, else those `detect` finds, are cut
    out as `square_boxes` at lr_size x lr_size, put through `sr_fn` (uint8 (K, lr, lr, 3) ->
    uint8 (K, S, S, 3)) and pasted back with a feathered blend. The image is built strip by
    strip in uint8 (`enlarged_strips`); `write_enlarged_photo` writes it without holding it."""
    height, width = photo.shape[:2]
    found = super_resolve_faces(photo, sr_fn, lr_size, scale, boxes, margin, max_face, detect)
    image = np.empty((scale * height, scale * width, 3), np.uint8)
    for top, strip in enlarged_strips(photo, found.faces, found.pasted() * scale, scale, feather):
        image[top:top + len(strip)] = strip
    return PhotoResult(image, *found)
