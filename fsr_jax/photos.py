"""Faces in whole photos: find them (OpenCV Haar cascade), cut them out at the SR input size,
and paste super-resolved faces back into an enlarged photo with a feathered blend.

Boxes are float (K, 4) arrays of [x, y, width, height] in pixels of the photo they refer to.
Photos are uint8 (H, W, 3) RGB in [0, 255]. The cascade reliably finds frontal faces from
about 20 px in the original photo (the photo is enlarged 2x first; the cascade's window is 24 px).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import cv2
import numpy as np
from PIL import Image

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_SCALE = 2      # the photo is enlarged this much (PIL bicubic) before detection
MIN_FACE = 20         # smallest face searched for, in pixels of the original photo
MARGIN = 1.3          # Decision: Haar boxes hug eyes-to-mouth; training faces show the whole head
FEATHER = 0.15        # width of the blend ramp at a pasted face's border, as a share of its side


def upscale(photo: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (factor*H, factor*W, 3) by PIL bicubic."""
    height, width = photo.shape[:2]
    return np.asarray(Image.fromarray(photo).resize((factor * width, factor * height), Image.BICUBIC))


@functools.lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + CASCADE_FILE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"cannot load OpenCV's Haar cascade {path}")
    return cascade


def detect_faces(photo: np.ndarray, min_face: int = MIN_FACE, scale: int = DETECT_SCALE) -> np.ndarray:
    """Frontal faces of a photo: float (K, 4) boxes [x, y, w, h] in the photo's pixels, sorted
    top to bottom then left to right. The photo is enlarged `scale`x (PIL bicubic) and searched
    for faces of at least `min_face` original pixels (Haar cascade, scaleFactor 1.1, 5 neighbours)."""
    grey = cv2.cvtColor(upscale(photo, scale), cv2.COLOR_RGB2GRAY)
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_face * scale, min_face * scale))
    boxes = np.asarray(found, np.float64).reshape(-1, 4) / scale
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


def feather_mask(height: int, width: int, feather: float = FEATHER) -> np.ndarray:
    """float32 (height, width) blend weights in (0, 1]: 1 inside, ramping linearly down over the
    outer max(1, feather * min(height, width)) pixels, so every pixel of the box gets some weight."""
    ramp = max(1, round(feather * min(height, width)))
    y = np.minimum(np.arange(height), np.arange(height)[::-1])[:, None]
    x = np.minimum(np.arange(width), np.arange(width)[::-1])[None, :]
    return np.minimum(1.0, (np.minimum(x, y) + 1) / (ramp + 1)).astype(np.float32)


def paste_faces(canvas: np.ndarray, faces: np.ndarray, boxes: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """Blends each face (uint8 (K, S, S, 3)), resized by PIL bicubic to its box, into a copy of
    `canvas` (uint8 (H, W, 3)) with `feather_mask` weights; boxes are in canvas pixels, inside
    the canvas, their corners rounded to whole pixels. Pixels outside every box are left exactly
    as they were."""
    out = canvas.astype(np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    corners = np.rint(np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)).astype(int)
    for face, (x, y, x1, y1) in zip(faces, corners):
        w, h = x1 - x, y1 - y
        resized = np.asarray(Image.fromarray(face).resize((w, h), Image.BICUBIC), np.float32)
        mask = feather_mask(h, w, feather)[..., None]
        region = out[y:y + h, x:x + w]
        out[y:y + h, x:x + w] = mask * resized + (1.0 - mask) * region
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class PhotoResult(NamedTuple):
    """A super-resolved photo: `image` uint8 (scale*H, scale*W, 3); `boxes` float (K, 4) the
    faces found (or given), `crops` float (K, 4) the squares cut out for SR, both in pixels of
    the original photo; `faces` uint8 (K, S, S, 3) the SR faces pasted back."""

    image: np.ndarray
    boxes: np.ndarray
    crops: np.ndarray
    faces: np.ndarray


def super_resolve_photo(photo: np.ndarray, sr_fn: Callable[[np.ndarray], np.ndarray], lr_size: int,
                        scale: int, boxes: np.ndarray | None = None, margin: float = MARGIN,
                        feather: float = FEATHER) -> PhotoResult:
    """Enlarges a uint8 (H, W, 3) photo `scale`x with PIL bicubic and replaces each face by its
    super-resolved version: the faces `boxes` gives, else those `detect_faces` finds, are cut
    out as `square_boxes` at lr_size x lr_size, put through `sr_fn` (uint8 (K, lr, lr, 3) ->
    uint8 (K, S, S, 3)) and pasted back with a feathered blend."""
    height, width = photo.shape[:2]
    boxes = detect_faces(photo) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    crops = square_boxes(boxes, height, width, margin)
    lr = crop_faces(photo, crops, lr_size)
    faces = sr_fn(lr) if len(lr) else np.zeros((0, scale * lr_size, scale * lr_size, 3), np.uint8)
    image = paste_faces(upscale(photo, scale), faces, crops * scale, feather)
    return PhotoResult(image, boxes, crops, faces)
