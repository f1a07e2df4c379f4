"""fsr_jax.event_writer: TensorBoard event files without TensorFlow, read back by TensorBoard."""
import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from fsr_jax import event_writer, summaries
from helpers import REPO


def _read_back(logdir):
    """TensorBoard's own loader (the one its server uses, v1 summaries migrated) over logdir."""
    from tensorboard.backend.event_processing import plugin_event_accumulator

    accumulator = plugin_event_accumulator.EventAccumulator(
        str(logdir), size_guidance={plugin_event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def _values(accumulator, tag):
    """[(step, numpy value)] of a tag."""
    from tensorboard.util import tensor_util

    return [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]


def _plugin(accumulator, tag):
    return accumulator.SummaryMetadata(tag).plugin_data.plugin_name


def test_scalars_images_texts_histograms_read_back_by_tensorboard(tmp_path):
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    grey = rng.random((16, 16, 1))
    samples = rng.normal(size=1000)
    writer = event_writer.create_writer(tmp_path)   # inside clu's AsyncWriter
    assert type(writer).__name__ == "AsyncWriter"
    assert isinstance(writer, event_writer.clu_writers().MetricWriter)
    writer.write_scalars(3, {"loss/a": 0.125, "lr": np.float32(1e-4)})
    writer.write_scalars(7, {"loss/a": 2.5})
    writer.write_images(7, {"grids/rgb": grid, "grey": grey})
    writer.write_texts(7, {"note": "epoch 1 done"})
    writer.write_histograms(7, {"weights": samples}, num_buckets={"weights": 10})
    writer.write_hparams({"batch_size": 16, "dtype": "float32"})
    writer.close()

    (event_file,) = tmp_path.glob("events.out.tfevents.*")
    acc = _read_back(tmp_path)
    assert {"loss/a", "lr", "grids/rgb", "grey", "note", "weights",
            "_hparams_/session_start_info"} <= set(acc.Tags()["tensors"])

    assert _plugin(acc, "loss/a") == "scalars"
    assert [(s, float(v)) for s, v in _values(acc, "loss/a")] == [(3, 0.125), (7, 2.5)]
    ((step, lr),) = _values(acc, "lr")
    assert step == 3 and lr.dtype == np.float32 and lr == np.float32(1e-4)

    assert _plugin(acc, "grids/rgb") == "images"
    ((step, strings),) = _values(acc, "grids/rgb")
    assert step == 7 and strings[0] == b"40" and strings[1] == b"24" and len(strings) == 4
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(strings[2 + k]))), grid[k])
    ((_, strings),) = _values(acc, "grey")
    decoded = np.asarray(Image.open(io.BytesIO(strings[2])))
    np.testing.assert_array_equal(decoded, np.round(grey[..., 0] * 255).astype(np.uint8))

    assert _plugin(acc, "note") == "text"
    assert _values(acc, "note")[0][1].item() == b"epoch 1 done"

    assert _plugin(acc, "weights") == "histograms"
    ((_, table),) = _values(acc, "weights")
    counts, edges = np.histogram(samples, bins=10)
    np.testing.assert_array_equal(table[:, 2], counts)
    np.testing.assert_allclose(table[:, 0], edges[:-1])
    np.testing.assert_allclose(table[:, 1], edges[1:])
    assert event_file.stat().st_size > 0


def test_bad_image_shape_is_refused_naming_the_key(tmp_path):
    writer = event_writer.create_writer(tmp_path, asynchronous=False)
    with pytest.raises(ValueError, match="'flat'"):
        writer.write_images(0, {"flat": np.zeros((8, 8), np.uint8)})
    writer.close()


def test_run_summaries_go_to_jsonl_png_and_tensorboard(tmp_path):
    writer = summaries.SummaryWriter(tmp_path)
    assert writer.tensorboard is not None
    grid = np.arange(64 * 128 * 3, dtype=np.uint32).reshape(64, 128, 3).astype(np.uint8)
    writer.scalars(5, {"tnet/rec": 0.25, "images_per_s": 12.0})
    writer.images(5, {"teacher_student/tnet": grid})
    writer.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
        "step": 5, "tnet/rec": 0.25, "images_per_s": 12.0}
    acc = _read_back(tmp_path / "tensorboard")
    assert [(s, float(v)) for s, v in _values(acc, "tnet/rec")] == [(5, 0.25)]
    ((step, strings),) = _values(acc, "teacher_student/tnet")
    assert step == 5
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(strings[2]))), grid)
    png = np.asarray(Image.open(tmp_path / "images" / "teacher_student_tnet_00000005.png"))
    np.testing.assert_array_equal(png, grid)


def test_summaries_need_neither_tensorflow_nor_tensorboard(tmp_path):
    # A Python in which `import tensorflow` and `import tensorboard` fail, as in the default
    # install: the training module imports and a run's summaries are written; TensorBoard
    # (unblocked afterwards, as a viewer would be) reads them back.
    script = textwrap.dedent(f"""
        import sys

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tensorboard"):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None

        blocker = Blocked()
        sys.meta_path.insert(0, blocker)
        sys.path.insert(0, {str(REPO)!r})
        import fsr_jax.train
        from fsr_jax import summaries
        writer = summaries.SummaryWriter(__import__("pathlib").Path({str(tmp_path)!r}))
        assert writer.tensorboard is not None
        writer.scalars(1, {{"loss": 0.5}})
        writer.close()
        print("imported:", sorted({{m.split(".")[0] for m in sys.modules}}
                                  & {{"tensorflow", "tensorboard"}}))
        sys.meta_path.remove(blocker)
        from tensorboard.backend.event_processing import plugin_event_accumulator as pea
        acc = pea.EventAccumulator({str(tmp_path / "tensorboard")!r})
        acc.Reload()
        print("loss", [e.step for e in acc.Tensors("loss")])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "imported: []" in out.stdout
    assert "loss [1]" in out.stdout


def test_clu_metric_writers_package_still_exports_its_names(tmp_path):
    import clu.metric_writers as metric_writers

    stack = event_writer.clu_writers()
    assert metric_writers.AsyncWriter is stack.AsyncWriter
    assert metric_writers.MultiWriter is stack.MultiWriter
    writer = stack.MultiWriter([event_writer.EventFileMetricWriter(tmp_path),
                                stack.LoggingWriter()])
    writer.write_scalars(2, {"x": 1.0})
    writer.close()
    assert [float(v) for _, v in _values(_read_back(tmp_path), "x")] == [1.0]
