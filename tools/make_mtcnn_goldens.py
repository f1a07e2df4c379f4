"""Regenerate tests/golden/mtcnn_boxes.json: the reference MTCNN's faces on real photos, which
the JAX detector (fsr_jax.face_detector) must reproduce.

Who and when: a maintainer, by hand, only when the reference (facenet-pytorch, torch) or the
cases below change; commit the rewritten file with the reason. Never in CI, never to make a
failing test pass. Needs CPU torch and torchvision (`pip install -e '.[test,parity]' torchvision`)
and the reference files in the weight cache (`python -m fsr_jax.metrics.weights install`): the
facenet-pytorch 2.6.0 sources and weights, and the photos. The test itself needs no torch.

    python tools/make_mtcnn_goldens.py [--output tests/golden/mtcnn_boxes.json]

Each case is a photo from the cache, shrunk by PIL's `Image.reduce(factor)` (a box filter over
whole factor x factor blocks: the same pixels in every Pillow version), searched with
`MTCNN(min_face_size=..., keep_all=True).detect(photo, landmarks=True)` on the CPU in float32.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys

import numpy as np
from PIL import Image

from fsr_jax.metrics import weights

# (photo below the cache's reference/ folder, reduce factor, min_face)
CASES = (
    ("insightface/data/images/t1.jpg", 1, 20),
    ("insightface/data/images/t1.jpg", 4, 12),
    ("insightface/data/images/t1.jpg", 6, 12),
    ("tests/test_images/obama3.jpg", 8, 12),
    ("tests/test_images/biden.jpg", 12, 12),
    ("assets/test.jpg", 4, 12),
)
OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden" / "mtcnn_boxes.json"


def photo(relpath: str, factor: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB: the cached photo reduced by `factor`."""
    with Image.open(weights.reference_file(relpath)) as image:
        image = image.convert("RGB")
        return np.asarray(image.reduce(factor) if factor > 1 else image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args()
    import torch  # noqa: F401  (the reference needs it; fails here, not halfway)

    sources = weights.reference_file("facenet_pytorch/models/mtcnn.py").parents[2]
    sys.path.insert(0, str(sources))
    reference = importlib.import_module("facenet_pytorch.models.mtcnn")
    cases = []
    for relpath, factor, min_face in CASES:
        image = photo(relpath, factor)
        detector = reference.MTCNN(min_face_size=min_face, keep_all=True, device="cpu")
        boxes, scores, points = detector.detect(Image.fromarray(image), landmarks=True)
        if boxes is None:
            boxes, scores, points = np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        cases.append({"photo": relpath, "reduce": factor, "min_face": min_face, "size": list(image.shape[1::-1]),
                      "boxes_x1y1x2y2": np.asarray(boxes, np.float64).round(4).tolist(),
                      "scores": np.asarray(scores, np.float64).round(6).tolist(),
                      "landmarks": np.asarray(points, np.float64).round(4).tolist()})
        print(f"{relpath} /{factor} min_face {min_face}: {len(boxes)} faces")
    import torch as torch_module
    source = (f"facenet-pytorch 2.6.0 MTCNN (thresholds 0.6/0.7/0.7, factor 0.709), torch {torch_module.__version__} "
              "CPU float32; photos from the weight cache reduced by PIL Image.reduce; tools/make_mtcnn_goldens.py")
    args.output.write_text(json.dumps({"source": source, "cases": cases}, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
