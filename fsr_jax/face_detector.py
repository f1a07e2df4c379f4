"""MTCNN face detection in JAX: P-Net over an image pyramid, then R-Net and O-Net on the
candidates, with the published weights (facenet-pytorch 2.6.0's, fetched into the weight cache on
first use like the metric weights).

The algorithm and its constants are the reference implementation's (facenet-pytorch's
`detect_face`): pyramid factor 0.709 from a 12-px window down to 12 px, thresholds 0.6 / 0.7 / 0.7,
non-maximum suppression at IoU 0.5 per scale and 0.7 after, 0.7 "Min" after O-Net, area
resampling (torch's `interpolate(mode="area")`) for the pyramid and the crops. Its boxes agree
with the reference's (tests/golden/mtcnn_*.json, made with torch by tools/make_mtcnn_goldens.py).

Everything on the device is jitted at fixed shapes, so a folder of photos of many sizes compiles
P-Net once and R-Net and O-Net at most five times each: the pyramid is cut into TILE x TILE-cell
tiles (P-Net's 12-px windows at stride 2; each tile carries the 10 px of context its last cells
read, and a count of its rows and columns that are image, so each cell is the reference's value
on that level alone) and run in batches of TILE_BATCH across the levels; R-Net and O-Net run on
batches of CROP_BATCH_MIN to CROP_BATCH_MAX candidate crops, padded to a power of two. Memory
follows the tiles and crops: about 10 MB of device memory per batch. On the host one pyramid level
is held at a time and resampled in strips: about 30 bytes per photo pixel beyond the photo.

Photos are uint8 (H, W, 3) RGB; boxes come back as float (K, 4) [x, y, w, h] in photo pixels.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Callable, Iterator

import jax
import numpy as np

from fsr_jax.metrics import weights
from fsr_jax.models import mtcnn

FACTOR = 0.709                        # the pyramid's scale step (the reference's)
THRESHOLDS = (0.6, 0.7, 0.7)          # face probability each net must reach (P, R, O)
MIN_FACE = 12                         # smallest face searched for, in photo pixels (P-Net's window)
TILE = 32                             # P-Net output cells per tile side
TILE_BATCH = 32                       # tiles per P-Net call
TILE_INPUT = 2 * TILE + 10            # the input pixels a tile's cells read
CROP_BATCH_MIN = 16                   # R-Net and O-Net batches are powers of two from this
CROP_BATCH_MAX = 256                  # ... to this (bounds their memory and their compilations)
AREA_STRIP_VALUES = 1 << 18           # float64 running sums held at a time while area-resizing (2 MB)


@dataclasses.dataclass(frozen=True)
class Detections:
    """Faces found in one photo: `boxes` float (K, 4) [x, y, w, h] in photo pixels, `scores`
    float (K,) O-Net's face probability, `landmarks` float (K, 5, 2) (x, y) of the eyes, nose
    and mouth corners; highest score first."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray


# ----------------------------------------------------------------------------- resampling


def _area_weights(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive average pooling bins along one axis: int (out,) starts and ends."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _area_resize_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Axis `axis` (0 or 1) of (H, W, C) pixels of any real dtype area-resized to `size`, float32;
    the float64 running sums are taken a strip of lines of the other axis at a time (about
    AREA_STRIP_VALUES values), so they cost a strip, not the photo."""
    start, end = _area_weights(image.shape[axis], size)
    counts = (end - start)[:, None, None]
    resized = np.empty(image.shape[:axis] + (size,) + image.shape[axis + 1:], np.float32)
    lines, resized_lines = np.swapaxes(image, 0, axis), np.swapaxes(resized, 0, axis)
    strip_lines = max(1, AREA_STRIP_VALUES // (lines.shape[0] * int(np.prod(lines.shape[2:]))))
    sums = np.zeros((lines.shape[0] + 1, min(strip_lines, lines.shape[1]), *lines.shape[2:]), np.float64)
    for first in range(0, lines.shape[1], strip_lines):
        strip = lines[:, first:first + strip_lines]
        width = strip.shape[1]
        np.cumsum(strip, axis=0, dtype=np.float64, out=sums[1:, :width])
        resized_lines[:, first:first + width] = (sums[end, :width] - sums[start, :width]) / counts
    return resized


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch.nn.functional.interpolate(mode='area') of (H, W, C) pixels of any real dtype, float32:
    each output pixel the mean of its adaptive-average-pooling bin, rows then columns (through
    float64 running sums)."""
    return _area_resize_axis(_area_resize_axis(image, height, 0), width, 1)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Pixel values [0, 255] -> MTCNN's input range, (p - 127.5) / 128, float32."""
    normalised = np.array(pixels, np.float32)
    normalised -= np.float32(127.5)
    normalised *= np.float32(0.0078125)
    return normalised


def pyramid_scales(height: int, width: int, min_face: float) -> list[float]:
    """The reference's scales: 12 / min_face, times FACTOR while the shorter side is >= 12 px."""
    scale = 12.0 / min_face
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= FACTOR
        shorter *= FACTOR
    return scales


# ----------------------------------------------------------------------------- boxes


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: int indices kept, highest score first. `boxes` float
    (K, 4) [x1, y1, x2, y2]. 'union': torchvision's nms (IoU of areas (x2-x1)(y2-y1), drop > threshold);
    'min': the reference's nms_numpy 'Min' (areas with +1, intersection over the smaller, drop > threshold)."""
    one = 1.0 if method == "min" else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + one)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + one)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool) -> np.ndarray:
    """Boxes [x1, y1, x2, y2] moved by offsets (shares of their width and height; +1 in the
    sizes after P-Net, as the reference)."""
    size = boxes[:, 2:4] - boxes[:, 0:2] + (1.0 if plus_one else 0.0)
    return boxes + offsets * np.concatenate([size, size], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes [x1, y1, x2, y2] grown to squares of their longer side about their centres (rerec)."""
    size = boxes[:, 2:4] - boxes[:, 0:2]
    side = size.max(axis=1)
    corner = boxes[:, 0:2] + size * 0.5 - side[:, None] * 0.5
    return np.concatenate([corner, corner + side[:, None]], axis=1)


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The reference's crops: each box truncated to whole pixels, its part inside the photo
    (1-based corners clipped to it) area-resized to size x size. float (K, size, size, 3) in [0, 255]."""
    height, width = image.shape[:2]
    corners = np.trunc(boxes).astype(np.int64)
    x0, y0 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
    x1, y1 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for k in range(len(boxes)):
        if y1[k] > y0[k] - 1 and x1[k] > x0[k] - 1:
            out[k] = area_resize(image[y0[k] - 1:y1[k], x0[k] - 1:x1[k]], size, size)
    return out


# ----------------------------------------------------------------------------- the nets, jitted


@functools.lru_cache(maxsize=1)
def load_params() -> dict:
    """{'pnet', 'rnet', 'onet': Flax params} on the default device, from the weight cache (fetched and
    converted on first use; MissingWeightsError naming the install command when that is impossible)."""
    return {net: weights.load_params(name, functools.partial(mtcnn.abstract_params, net))
            for net, name in weights.MTCNN_FILES.items()}


@jax.jit
def _pnet(params, tiles, valid):
    return mtcnn.PNet().apply({"params": params}, tiles, valid)


@jax.jit
def _rnet(params, faces):
    return mtcnn.RNet().apply({"params": params}, faces)


@jax.jit
def _onet(params, faces):
    return mtcnn.ONet().apply({"params": params}, faces)


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])


def _run_crops(net: Callable, params, image: np.ndarray, boxes: np.ndarray, size: int) -> list[np.ndarray]:
    """A net over the size x size `crops` of uint8 (H, W, 3) `image` at float (K, 4) `boxes`, at most
    CROP_BATCH_MAX at a time, each batch padded to a power of two (>= CROP_BATCH_MIN); its outputs
    for the K crops."""
    outputs = []
    for first in range(0, len(boxes), CROP_BATCH_MAX):
        faces = crops(image, boxes[first:first + CROP_BATCH_MAX], size)
        batch = max(CROP_BATCH_MIN, 1 << max(0, len(faces) - 1).bit_length())
        outputs.append([np.asarray(o)[:len(faces)] for o in net(params, _padded(normalise(faces), batch))])
    return [np.concatenate(parts) for parts in zip(*outputs)]


# ----------------------------------------------------------------------------- stage 1


@dataclasses.dataclass(frozen=True)
class _Tile:
    level: int
    row: int   # first cell row / column of the tile in its level
    col: int
    rows: int  # cell rows / columns of the tile that lie on its level (<= TILE)
    cols: int


def _tile_input(level: np.ndarray, tile: _Tile) -> tuple[np.ndarray, tuple[int, int]]:
    part = level[2 * tile.row:2 * tile.row + TILE_INPUT, 2 * tile.col:2 * tile.col + TILE_INPUT]
    padded = np.zeros((TILE_INPUT, TILE_INPUT, 3), np.float32)
    padded[:part.shape[0], :part.shape[1]] = part
    return padded, part.shape[:2]


def _tiles(level: np.ndarray, index: int) -> Iterator[tuple[_Tile, np.ndarray, tuple[int, int]]]:
    """(tile, float (TILE_INPUT, TILE_INPUT, 3) input, its (rows, cols) that are image) for the tiles
    covering P-Net's output cells on float (h, w, 3) pyramid level number `index`: conv 3x3,
    ceil-mode pool 2 and two convs 3x3 leave ceil((n - 2) / 2) - 4 cells per side."""
    rows, cols = (-(-(n - 2) // 2) - 4 for n in level.shape[:2])
    for row in range(0, max(rows, 0), TILE):
        for col in range(0, max(cols, 0), TILE):
            tile = _Tile(index, row, col, min(TILE, rows - row), min(TILE, cols - col))
            yield tile, *_tile_input(level, tile)


def _pyramid_tiles(photo: np.ndarray, scales: list[float]) -> Iterator[tuple[_Tile, np.ndarray, tuple[int, int]]]:
    """`_tiles` of every pyramid level of uint8 (H, W, 3) `photo`, a level built when its first tile
    is wanted and dropped after its last, so that memory holds one level, not the pyramid."""
    height, width = photo.shape[:2]
    for index, scale in enumerate(scales):
        yield from _tiles(normalise(area_resize(photo, int(height * scale + 1), int(width * scale + 1))), index)


def propose(photo: np.ndarray, params: dict, min_face: float) -> np.ndarray:
    """Stage 1: P-Net over the pyramid of uint8 (H, W, 3) `photo`; float (K, 9) candidates [x1, y1,
    x2, y2, score, 4 offsets] in photo pixels, after NMS 0.5 per scale and 0.7 over all."""
    scales = pyramid_scales(*photo.shape[:2], min_face)
    found: list[list[np.ndarray]] = [[] for _ in scales]
    tiles = _pyramid_tiles(photo, scales)
    while batch := list(itertools.islice(tiles, TILE_BATCH)):
        batch_tiles, inputs, valid = zip(*batch)
        probability, offsets = (np.asarray(o) for o in _pnet(params["pnet"], _padded(np.stack(inputs), TILE_BATCH),
                                                              _padded(np.asarray(valid, np.int32), TILE_BATCH)))
        for t, tile in enumerate(batch_tiles):
            p = probability[t, :tile.rows, :tile.cols]
            r, c = np.nonzero(p >= THRESHOLDS[0])
            if len(r):
                cells = np.stack([c + tile.col, r + tile.row], axis=1).astype(np.float32)
                found[tile.level].append(np.concatenate([cells, p[r, c, None], offsets[t, r, c]], axis=1))
    candidates = []
    for scale, cells in zip(scales, found):
        if not cells:
            continue
        cells = np.concatenate(cells)
        order = np.lexsort((cells[:, 0], cells[:, 1]))  # the reference's row-major cell order
        cells = cells[order]
        q1 = np.floor((2 * cells[:, :2] + 1) / np.float32(scale))
        q2 = np.floor((2 * cells[:, :2] + 12) / np.float32(scale))
        boxes = np.concatenate([q1, q2, cells[:, 2:]], axis=1).astype(np.float32)
        candidates.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
    if not candidates:
        return np.zeros((0, 9), np.float32)
    boxes = np.concatenate(candidates)
    return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]


# ----------------------------------------------------------------------------- stages 2 and 3


def detect(photo: np.ndarray, min_face: float = MIN_FACE, min_score: float = THRESHOLDS[2]) -> Detections:
    """MTCNN's faces of a uint8 (H, W, 3) RGB photo of at least `min_face` pixels whose final
    face probability exceeds `min_score`; see the module docstring."""
    if not min_face > 0:
        raise ValueError(f"min_face must be positive, not {min_face}")
    params = load_params()
    image = np.asarray(photo)
    candidates = propose(image, params, min_face)
    boxes = square(regress(candidates[:, :4], candidates[:, 5:9], plus_one=False))
    if len(boxes):
        probability, offsets = _run_crops(_rnet, params["rnet"], image, boxes, 24)
        passed = probability > THRESHOLDS[1]
        boxes, probability, offsets = boxes[passed], probability[passed], offsets[passed]
        keep = nms(boxes, probability, 0.7)
        boxes = square(regress(boxes[keep], offsets[keep], plus_one=True))
    if not len(boxes):
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
    probability, offsets, points = _run_crops(_onet, params["onet"], image, boxes, 48)
    passed = probability > min_score
    boxes, probability, offsets, points = boxes[passed], probability[passed], offsets[passed], points[passed]
    size = boxes[:, 2:4] - boxes[:, 0:2] + 1
    landmarks = np.stack([size[:, :1] * points[:, :5] + boxes[:, :1] - 1,
                          size[:, 1:] * points[:, 5:] + boxes[:, 1:2] - 1], axis=-1)
    boxes = regress(boxes, offsets, plus_one=True)
    keep = nms(boxes, probability, 0.7, method="min")
    boxes, probability, landmarks = boxes[keep], probability[keep], landmarks[keep]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return Detections(xywh.astype(np.float64), probability.astype(np.float64), landmarks.astype(np.float64))


def detect_faces(photo: np.ndarray, min_face: float = MIN_FACE, min_score: float = THRESHOLDS[2]) -> np.ndarray:
    """`detect`'s boxes, float (K, 4) [x, y, w, h], sorted top to bottom then left to right."""
    boxes = detect(photo, min_face, min_score).boxes
    return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]
