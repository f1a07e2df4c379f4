"""MTCNN face detection in JAX: P-Net over an image pyramid, then R-Net and O-Net on the
candidates, with the published weights (facenet-pytorch 2.6.0's, fetched into the weight cache on
first use like the metric weights).

The algorithm and its constants are the reference implementation's (facenet-pytorch's
`detect_face`): pyramid factor 0.709 from a 12-px window down to 12 px, thresholds 0.6 / 0.7 / 0.7,
non-maximum suppression at IoU 0.5 per scale and 0.7 after, 0.7 "Min" after O-Net, area
resampling (torch's `interpolate(mode="area")`) for the pyramid and the crops. Its boxes agree
with the reference's (tests/golden/mtcnn_*.json, made with torch by tools/make_mtcnn_goldens.py).

Everything on the device is jitted at fixed shapes, so a folder of photos of many sizes compiles
three functions once: the pyramid is cut into TILE x TILE-cell tiles (P-Net's 12-px windows at
stride 2; each tile carries the 10 px of context its last cells read, and a count of its rows and
columns that are image, so each cell is the reference's value on that level alone) and run in
batches of TILE_BATCH over every level at once; R-Net and O-Net run on batches of candidate crops
padded to a power of two. Memory follows the tiles: about 10 MB of device memory per batch.

Photos are uint8 (H, W, 3) RGB; boxes come back as float (K, 4) [x, y, w, h] in photo pixels.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

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


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch.nn.functional.interpolate(mode='area') of float (H, W, C): each output pixel the mean
    of its adaptive-average-pooling bin, rows then columns (through float64 running sums)."""
    for axis, out in ((0, height), (1, width)):
        start, end = _area_weights(image.shape[axis], out)
        sums = np.cumsum(image, axis=axis, dtype=np.float64)
        sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
        counts = (end - start).reshape((-1, 1, 1) if axis == 0 else (1, -1, 1))
        image = ((np.take(sums, end, axis=axis) - np.take(sums, start, axis=axis)) / counts).astype(np.float32)
    return image


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Pixel values [0, 255] -> MTCNN's input range, (p - 127.5) / 128, float32."""
    return ((np.asarray(pixels, np.float32) - np.float32(127.5)) * np.float32(0.0078125)).astype(np.float32)


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


def _run_crops(net: Callable, params, faces: np.ndarray) -> list[np.ndarray]:
    """A net over float (K, s, s, 3) crops in batches of a power of two (>= CROP_BATCH_MIN)."""
    size = max(CROP_BATCH_MIN, 1 << max(0, len(faces) - 1).bit_length())
    return [np.asarray(o)[:len(faces)] for o in net(params, _padded(normalise(faces), size))]


# ----------------------------------------------------------------------------- stage 1


@dataclasses.dataclass(frozen=True)
class _Tile:
    level: int
    row: int   # first cell row / column of the tile in its level
    col: int


def _cells(level: np.ndarray) -> tuple[int, int]:
    """P-Net's output rows and columns on a level: conv 3x3, ceil-mode pool 2, two convs 3x3."""
    rows, cols = (-(-(n - 2) // 2) - 4 for n in level.shape[:2])
    return rows, cols


def _tiles(levels: list[np.ndarray]) -> list[_Tile]:
    tiles = []
    for k, level in enumerate(levels):
        rows, cols = _cells(level)
        tiles += [_Tile(k, r, c) for r in range(0, max(rows, 0), TILE) for c in range(0, max(cols, 0), TILE)]
    return tiles


def _tile_input(level: np.ndarray, tile: _Tile) -> tuple[np.ndarray, tuple[int, int]]:
    part = level[2 * tile.row:2 * tile.row + TILE_INPUT, 2 * tile.col:2 * tile.col + TILE_INPUT]
    padded = np.zeros((TILE_INPUT, TILE_INPUT, 3), np.float32)
    padded[:part.shape[0], :part.shape[1]] = part
    return padded, part.shape[:2]


def propose(image: np.ndarray, params: dict, min_face: float) -> np.ndarray:
    """Stage 1: P-Net over the pyramid; float (K, 9) candidates [x1, y1, x2, y2, score, 4 offsets]
    in photo pixels, after NMS 0.5 per scale and 0.7 over all."""
    height, width = image.shape[:2]
    scales = pyramid_scales(height, width, min_face)
    levels = [normalise(area_resize(image, int(height * s + 1), int(width * s + 1))) for s in scales]
    tiles = _tiles(levels)
    found: list[list[np.ndarray]] = [[] for _ in levels]
    for first in range(0, len(tiles), TILE_BATCH):
        batch = tiles[first:first + TILE_BATCH]
        inputs, valid = zip(*(_tile_input(levels[t.level], t) for t in batch))
        probability, offsets = (np.asarray(o) for o in _pnet(params["pnet"], _padded(np.stack(inputs), TILE_BATCH),
                                                              _padded(np.asarray(valid, np.int32), TILE_BATCH)))
        for t, tile in enumerate(batch):
            rows, cols = _cells(levels[tile.level])
            p = probability[t, :rows - tile.row, :cols - tile.col]
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
    image = np.asarray(photo, np.float32)
    candidates = propose(image, params, min_face)
    boxes = square(regress(candidates[:, :4], candidates[:, 5:9], plus_one=False))
    if len(boxes):
        probability, offsets = _run_crops(_rnet, params["rnet"], crops(image, boxes, 24))
        passed = probability > THRESHOLDS[1]
        boxes, probability, offsets = boxes[passed], probability[passed], offsets[passed]
        keep = nms(boxes, probability, 0.7)
        boxes = square(regress(boxes[keep], offsets[keep], plus_one=True))
    if not len(boxes):
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
    probability, offsets, points = _run_crops(_onet, params["onet"], crops(image, boxes, 48))
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
