"""Recall and false detections of the photo face detectors (MTCNN, Haar) on real photos shrunk so
that their faces are 12-40 px: the README's detector table.

    python tools/detector_recall.py [--sizes 12,16,20,24,32,40] [--json out.json]

Photos and labels: tools/detector_labels.json (11 faces in 6 photos, labelled at full size; the
photos come from the weight cache, `python -m fsr_jax.metrics.weights install`). For each face
size s, each photo is shrunk with PIL's box filter (area averaging, as a camera's lower
resolution would) by s / its median face height, so its faces are about s px tall. A labelled
face is found when a detection overlaps it with IoU >= 0.3 (each detection counts for one face
at most); a detection that finds no face is false. Detectors at their defaults (MTCNN min_face
12, score > 0.7; Haar min_face 20) and Haar with min_face 12. Prints a markdown table and the
time per photo on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import jax
import numpy as np
from PIL import Image

from fsr_jax import face_detector, photos
from fsr_jax.metrics import weights

LABELS = pathlib.Path(__file__).with_name("detector_labels.json")
MATCH_IOU = 0.3
DETECTORS = {
    "MTCNN": lambda photo: face_detector.detect_faces(photo),
    "Haar": lambda photo: photos.detect_faces(photo),
    "Haar, min_face 12": lambda photo: photos.detect_faces(photo, min_face=12),
}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, J) IoU of [x, y, w, h] boxes."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: z[:, 2] * z[:, 3]  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def matches(labels: np.ndarray, found: np.ndarray) -> int:
    """Labelled faces found: greedy one-to-one matching by IoU >= MATCH_IOU, best pairs first."""
    if not len(labels) or not len(found):
        return 0
    overlap = iou(labels, found)
    hits = 0
    while overlap.size and overlap.max() >= MATCH_IOU:
        i, j = np.unravel_index(np.argmax(overlap), overlap.shape)
        overlap[i, :], overlap[:, j] = -1, -1
        hits += 1
    return hits


def shrunk(relpath: str, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo with its median face `size` px tall (PIL box filter), and its labels scaled."""
    with Image.open(weights.reference_file(relpath)) as image:
        image = image.convert("RGB")
        factor = size / np.median(boxes[:, 3])
        width, height = round(image.width * factor), round(image.height * factor)
        scale = np.array([width / image.width, height / image.height] * 2)
        return np.asarray(image.resize((width, height), Image.BOX)), boxes * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="12,16,20,24,32,40", help="face heights in px, comma-separated")
    parser.add_argument("--json", type=pathlib.Path, help="also write the counts here")
    args = parser.parse_args()
    labels = {k: np.asarray(v, np.float64) for k, v in json.loads(LABELS.read_text())["photos"].items()}
    sizes = [int(s) for s in args.sizes.split(",")]
    face_detector.detect(np.zeros((24, 24, 3), np.uint8))  # compile once, outside the timings
    rows, seconds = [], {name: [] for name in DETECTORS}
    for size in sizes:
        row = {"size": size, "faces": 0, **{name: [0, 0] for name in DETECTORS}}
        for relpath, boxes in labels.items():
            photo, truth = shrunk(relpath, boxes, size)
            row["faces"] += len(truth)
            for name, detect in DETECTORS.items():
                start = time.perf_counter()
                found = detect(photo)
                seconds[name].append(time.perf_counter() - start)
                hits = matches(truth, found)
                row[name][0] += hits
                row[name][1] += len(found) - hits
        rows.append(row)
    names = list(DETECTORS)
    print("| face height | faces | " + " | ".join(f"{n} found | {n} false" for n in names) + " |")
    print("|---|---|" + "---|---|" * len(names))
    for row in rows:
        print(f"| {row['size']} px | {row['faces']} | "
              + " | ".join(f"{row[n][0]} | {row[n][1]}" for n in names) + " |")
    total = {n: [sum(r[n][0] for r in rows), sum(r[n][1] for r in rows)] for n in names}
    faces = sum(r["faces"] for r in rows)
    print(f"| all | {faces} | " + " | ".join(f"{total[n][0]} | {total[n][1]}" for n in names) + " |")
    print(f"mean seconds per photo ({os.cpu_count()} CPU cores, jax {jax.default_backend()}): "
          + ", ".join(f"{n} {np.mean(seconds[n]):.2f}" for n in names))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "seconds": {n: float(np.mean(s)) for n, s in seconds.items()}},
                                        indent=1))


if __name__ == "__main__":
    main()
