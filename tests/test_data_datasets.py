"""fsr_jax.data.datasets (+ builders): preparing the shared faces, policies, reuse, test sets."""
import json
import logging
import pathlib
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from fsr_jax import data
from fsr_jax.data import datasets, images


def _pngs(folder):
    files = sorted(folder.glob("*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return pixels, [f.name for f in files]


def test_shared_faces_prepare_with_counts_pixels_and_names(faces_cfg, faces_dir):
    hr_builder, lr_builder = datasets.train_builders(faces_cfg)
    for builder, folder, count in ((hr_builder, "HIGH", 900), (lr_builder, "LOW", 4000)):
        assert builder.info.file_format.value == "array_record"
        faces, names = datasets.read_faces(builder)
        expected, expected_names = _pngs(faces_dir / "train" / folder)
        assert len(names) == count and names == expected_names
        np.testing.assert_array_equal(faces, expected)

    celeba = data.load_test_set(faces_cfg, "celeba")
    lr, names = _pngs(faces_dir / "test" / "celeba" / "LR")
    hr, _ = _pngs(faces_dir / "test" / "celeba" / "HR")
    assert celeba["names"] == names and len(names) == 100
    np.testing.assert_array_equal(celeba["lr"], lr)
    np.testing.assert_array_equal(celeba["hr"], hr)

    wider = data.load_test_set(faces_cfg, "widerface")
    lr, names = _pngs(faces_dir / "test" / "widerface" / "LR")
    assert wider["names"] == names and len(names) == 1000 and wider["hr"] is None
    np.testing.assert_array_equal(wider["lr"], lr)

    capped = data.load_test_set(faces_cfg, "widerface", max_images=10)
    np.testing.assert_array_equal(capped["lr"], lr[:10])
    assert data.test_set_names(faces_cfg) == ("celeba", "widerface")


def test_unchanged_folder_is_reused_and_changed_folder_rebuilt(tmp_path, faces_dir, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    folder = tmp_path / "hr"
    folder.mkdir()
    for f in sorted((faces_dir / "train" / "HIGH").iterdir())[:5]:
        shutil.copy(f, folder / f.name)
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    first = datasets.folder_builder(folder, 64, cfg, "hr")
    assert f"preparing HR faces from {folder}: 5 images, into {first.data_dir}" in caplog.text
    caplog.clear()
    again = datasets.folder_builder(folder, 64, cfg, "hr")
    assert again.data_dir == first.data_dir and "reusing the prepared dataset" in caplog.text
    shutil.copy(sorted((faces_dir / "train" / "HIGH").iterdir())[5], folder / "zz.png")
    changed = datasets.folder_builder(folder, 64, cfg, "hr")
    assert changed.data_dir != first.data_dir
    assert changed.info.splits["train"].num_examples == 6


def _bad_folder(root, faces_dir):
    root.mkdir()
    faces = sorted((faces_dir / "train" / "HIGH").iterdir())
    for f in faces[:4]:
        shutil.copy(f, root / f.name)
    (root / "truncated.png").write_bytes(faces[4].read_bytes()[:200])
    (root / "text.png").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    Image.open(faces[5]).convert("L").resize((100, 100), Image.BICUBIC).save(root / "grey.jpg")
    (root / "labels.csv").write_text("x")
    return root, faces


def test_bad_files_error_and_skip_through_the_pipeline(tmp_path, faces_dir, caplog):
    hr_dir, faces = _bad_folder(tmp_path / "hr", faces_dir)
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.hr_dir, cfg.lr_dir = str(hr_dir), str(faces_dir / "test" / "celeba" / "LR")
    with pytest.raises(images.DataError) as e:
        data.make_train_iterator(cfg, global_batch_size=2, seed=0, process_index=0,
                                 process_count=1)
    for name in ("truncated.png", "text.png", "empty.png"):
        assert name in str(e.value)
    assert not list((tmp_path / "tfds").glob("hr-*/face_folder/1.0.0/*.array_record*"))

    caplog.set_level(logging.INFO, logger="absl")
    cfg.on_bad_image = "skip"
    iterator = data.make_train_iterator(cfg, global_batch_size=5, seed=0, process_index=0,
                                        process_count=1)
    assert iterator.order.num_hr == 5 and iterator.steps_per_epoch == 1
    assert "3 bad files skipped" in caplog.text and "1 non-image entries ignored" in caplog.text
    assert "1 x resized to 64x64" in caplog.text and "1 x mode L -> RGB" in caplog.text
    hr, names = datasets.read_faces(datasets.folder_builder(hr_dir, 64, cfg, "hr"))
    assert names == sorted([f.name for f in faces[:4]] + ["grey.jpg"])
    grey = Image.open(hr_dir / "grey.jpg").convert("RGB").resize((64, 64), Image.BICUBIC)
    np.testing.assert_array_equal(hr[names.index("grey.jpg")], np.asarray(grey))
    iterator.close()


def test_wrong_size_error_policy(tmp_path, faces_dir):
    hr_dir, _ = _bad_folder(tmp_path / "hr", faces_dir)
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.on_bad_image, cfg.on_wrong_size = "skip", "error"
    with pytest.raises(images.DataError, match="grey.jpg"):
        datasets.folder_builder(hr_dir, 64, cfg, "hr")


def test_missing_folders_and_half_configs_are_clear_errors(tmp_path, faces_dir):
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.hr_dir = str(faces_dir / "train" / "HIGH")
    with pytest.raises(ValueError, match="both data.hr_dir and data.lr_dir"):
        datasets.train_builders(cfg)
    cfg.lr_dir = str(tmp_path / "nowhere")
    with pytest.raises(images.DataError, match=str(tmp_path / "nowhere")):
        datasets.train_builders(cfg)
    (tmp_path / "empty").mkdir()
    cfg.lr_dir = str(tmp_path / "empty")
    with pytest.raises(images.DataError, match="holds no image"):
        datasets.train_builders(cfg)
    cfg.test_sets.broken = str(tmp_path / "empty")
    with pytest.raises(images.DataError, match="has no LR/"):
        data.load_test_set(cfg, "broken")


def test_test_set_with_unmatched_names_is_refused(tmp_path, faces_dir):
    root = tmp_path / "ts"
    shutil.copytree(faces_dir / "test" / "celeba", root)
    (root / "HR" / "202500.png").unlink()
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.test_sets.mine = str(root)
    with pytest.raises(images.DataError, match="202500.png"):
        data.load_test_set(cfg, "mine")


def test_synthetic_default_is_logged_and_matches_the_generator(tmp_path, caplog):
    from fsr_jax.data import synthetic

    caplog.set_level(logging.INFO, logger="absl")
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.synthetic_hr, cfg.synthetic_lr, cfg.synthetic_test = 8, 6, 4
    hr_builder, lr_builder = datasets.train_builders(cfg)
    assert "SYNTHETIC default faces" in caplog.text
    hr, _ = datasets.read_faces(hr_builder)
    lr, names = datasets.read_faces(lr_builder)
    assert hr.shape == (8, 64, 64, 3) and lr.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(hr[3], synthetic.hr_face(0, 3))
    np.testing.assert_array_equal(lr[5], synthetic.lr_face(0, 5))
    assert data.test_set_names(cfg) == datasets.SYNTHETIC_TEST_SETS
    paired = data.load_test_set(cfg, "synthetic_bicubic")
    np.testing.assert_array_equal(paired["lr"],
                                  [images.resize_bicubic(h, 16) for h in paired["hr"]])
    real = data.load_test_set(cfg, "synthetic_real")
    assert real["hr"] is None and real["lr"].shape == (4, 16, 16, 3)


def test_test_set_pair_with_a_skipped_file_is_dropped_and_logged(tmp_path, faces_dir, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    root = tmp_path / "ts"
    shutil.copytree(faces_dir / "test" / "celeba", root)
    (root / "LR" / "202501.png").write_text("oops")
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress, cfg.on_bad_image = str(tmp_path / "tfds"), False, "skip"
    cfg.test_sets.mine = str(root)
    loaded = data.load_test_set(cfg, "mine")
    assert len(loaded["names"]) == 99 and "202501.png" not in loaded["names"]
    assert "1 pairs dropped" in caplog.text and "202501.png" in caplog.text


def test_intake_errors_through_preparation_skip_and_error(tmp_path, faces_dir, monkeypatch,
                                                          caplog):
    from test_data_images import INTAKE_REASONS, intake_folder

    faces = sorted((faces_dir / "train" / "HIGH").iterdir())[:6]
    folder = intake_folder(tmp_path / "hr", faces, monkeypatch)
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    with pytest.raises(images.DataError) as e:
        datasets.folder_builder(folder, 64, cfg, "hr")
    for name, reason in INTAKE_REASONS.items():
        assert f"{folder / name}: " in str(e.value) and reason in str(e.value)

    caplog.set_level(logging.INFO, logger="absl")
    cfg.on_bad_image = "skip"
    builder = datasets.folder_builder(folder, 64, cfg, "hr")
    _, names = datasets.read_faces(builder)
    assert names == sorted(f.name for f in faces[:4])
    assert "4 bad files skipped" in caplog.text
    assert sorted(b[0] for b in builder.info.metadata["scans"]["image"]["bad"]) == sorted(
        INTAKE_REASONS)


def test_max_image_pixels_is_a_config_field(tmp_path, faces_dir):
    folder = tmp_path / "hr"
    folder.mkdir()
    for f in sorted((faces_dir / "train" / "HIGH").iterdir())[:3]:
        shutil.copy(f, folder / f.name)
    Image.open(f).resize((100, 100)).save(folder / "big.png")
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.max_image_pixels = 64 * 64
    with pytest.raises(images.DataError, match=r"big.png: too large: 10,000 pixels \(100x100\)"):
        datasets.folder_builder(folder, 64, cfg, "hr")
    cfg.on_bad_image = "skip"
    assert datasets.folder_builder(folder, 64, cfg, "hr").info.splits["train"].num_examples == 3
    cfg.max_image_pixels = 100 * 100  # another limit is another dataset
    assert datasets.folder_builder(folder, 64, cfg, "hr").info.splits["train"].num_examples == 4


def _small_hr(tmp_path, faces_dir, n=5):
    folder = tmp_path / "hr"
    folder.mkdir()
    for f in sorted((faces_dir / "train" / "HIGH").iterdir())[:n]:
        shutil.copy(f, folder / f.name)
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    return folder, cfg


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_damaged_prepared_dataset_is_rebuilt(tmp_path, faces_dir, caplog, damage):
    folder, cfg = _small_hr(tmp_path, faces_dir)
    first = datasets.folder_builder(folder, 64, cfg, "hr")
    expected, expected_names = datasets.read_faces(first)
    manifest = json.loads((pathlib.Path(first.data_dir) / datasets.MANIFEST).read_text())
    shard = next(n for n in manifest["files"] if ".array_record" in n)
    assert {"dataset_info.json", "features.json"} <= set(manifest["files"])
    path = pathlib.Path(first.data_dir) / shard
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # same size, one byte changed: found by the sha256
        path.write_bytes(raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:])
    caplog.set_level(logging.INFO, logger="absl")
    again = datasets.folder_builder(folder, 64, cfg, "hr")
    damaged = [r.getMessage() for r in caplog.records if "is damaged (" in r.getMessage()]
    assert len(damaged) == 1 and shard in damaged[0] and "rebuilding it" in damaged[0]
    assert "the prepared one was damaged" in caplog.text
    faces, names = datasets.read_faces(again)
    np.testing.assert_array_equal(faces, expected)
    assert names == expected_names
    caplog.clear()
    datasets.folder_builder(folder, 64, cfg, "hr")
    assert "reusing the prepared dataset" in caplog.text and "is damaged" not in caplog.text


def test_concurrent_prepares_of_one_dataset_are_serialised(tmp_path, monkeypatch, caplog):
    from fsr_jax.data import builders

    caplog.set_level(logging.INFO, logger="absl")
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.synthetic_hr = 4
    slow = builders.SyntheticFaces._generate_examples

    def slow_examples(self):
        time.sleep(1.0)  # the first prepare is still writing when the second starts
        yield from slow(self)

    monkeypatch.setattr(builders.SyntheticFaces, "_generate_examples", slow_examples)
    results, errors = [], []

    def prepare():
        try:
            results.append(datasets.synthetic_builder(cfg, "hr"))
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({str(b.data_dir) for b in results}) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("preparing synthetic hr faces") for m in messages) == 1
    assert sum(m.startswith("waiting for another prepare of synthetic hr faces")
               for m in messages) == 1
    assert sum("reusing the prepared dataset" in m for m in messages) == 1
    for builder in results:
        assert datasets.read_faces(builder)[0].shape == (4, 64, 64, 3)


def test_bad_policy_values_are_one_line_errors(tmp_path):
    cfg = data.default_config()
    cfg.tfds_dir, cfg.progress = str(tmp_path / "tfds"), False
    cfg.on_bad_image, cfg.on_wrong_size = "ignore", "crop"
    with pytest.raises(images.DataError) as e:
        datasets.train_builders(cfg)
    assert str(e.value) == (
        "invalid data config: data.on_bad_image must be one of 'error', 'skip', got 'ignore'; "
        "data.on_wrong_size must be one of 'resize', 'error', got 'crop'")
    cfg.on_bad_image, cfg.on_wrong_size = "skip", "resize"
    cfg.test_sets["a/outside"] = str(tmp_path)  # a config file can set what --test_set refuses
    with pytest.raises(images.DataError, match="test set name 'a/outside': use only letters"):
        data.load_test_set(cfg, "a/outside")


def test_an_unwritable_tfds_dir_and_too_few_hr_faces_are_one_line_each(tmp_path, faces_dir):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    for folder, source, count in ((hr, "HIGH", 3), (lr, "LOW", 8)):
        folder.mkdir()
        for path in sorted((faces_dir / "train" / source).iterdir())[:count]:
            shutil.copy(path, folder / path.name)
    cfg = data.default_config()
    cfg.hr_dir, cfg.lr_dir, cfg.progress = str(hr), str(lr), False
    (tmp_path / "a_file").write_text("x")
    cfg.tfds_dir = str(tmp_path / "a_file" / "tfds")
    with pytest.raises(images.DataError, match=f"cannot prepare HR faces from {hr} in {tmp_path / 'a_file'}.*: "
                                               "Not a directory; set data.tfds_dir to a folder"):
        data.make_train_iterator(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1)
    cfg.tfds_dir = str(tmp_path / "tfds")
    with pytest.raises(images.DataError, match=f"^{hr} gives 3 usable HR faces, fewer than the batch size 4"):
        data.make_train_iterator(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1)


@pytest.mark.slow
def test_a_registered_data_source_trains_the_smoke_config_and_an_unknown_one_is_named(tmp_path, caplog):
    """A second data source is one registration plus one config line (`data.source`): here the
    synthetic faces drawn with another seed, under their own name."""
    from configs import smoke  # noqa: PLC0415
    from fsr_jax import checkpointing, train  # noqa: PLC0415

    def reseeded(data_cfg):
        drawn = data_cfg.copy_and_resolve_references()
        drawn.synthetic_seed = 7
        return datasets.SOURCES["synthetic"].train(drawn)

    datasets.SOURCES.register("reseeded", datasets.DataSource(reseeded))
    try:
        config = smoke.get_config()
        config.data.update(tfds_dir=str(tmp_path / "tfds"), source="reseeded", progress=False)
        config.stages, config.degradation.max_steps = ("degradation",), 2
        with caplog.at_level(logging.INFO):
            train.train_and_evaluate(config, str(tmp_path / "w"))
        assert "seed 7" in caplog.text
        assert checkpointing.latest_step(tmp_path / "w" / "degradation" / "checkpoints") == 2
        assert data.test_set_names(config.data) == ()
    finally:
        datasets.SOURCES.unregister("reseeded")
    with pytest.raises(images.DataError, match=r"data.source 'reseeded' is not a registered data source; the "
                                               r"sources are \['folders', 'synthetic'\]"):
        datasets.train_builders(config.data)
