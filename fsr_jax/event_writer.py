"""TensorBoard event files without TensorFlow: a clu `MetricWriter` over tensorboardX's writer.

`EventFileMetricWriter` implements clu's `MetricWriter` interface with tensorboardX's
`EventFileWriter` and summary protos (a 0.1 MB package; the `tensorboard` package, which pulls
in grpc and its data server, is needed only to view the runs). It writes what `tf.summary`
writes, so
TensorBoard shows the runs as before: scalars as float32 tensors of the scalars plugin, images
as PNG strings of the images plugin (`[width, height, png_1, ..., png_N]`), texts, histograms
(`[k, 3]` of left edge, right edge, count) and hyperparameters. Videos and audio are not
written (one warning each), as in clu's TensorFlow writer for videos.

`create_writer(logdir)` puts it inside clu's `AsyncWriter`, so PNG encoding and file writes
run in a background thread; `flush()` waits for them.

clu's writer stack (`interface`, `async_writer`, `multi_writer`, `logging_writer`) imports no
TensorFlow, but the package `clu.metric_writers` does in its `__init__` (for clu's own
`SummaryWriter`), and Python runs that `__init__` before any of its submodules. `clu_writers()`
therefore registers the package without running its `__init__`, imports those submodules and
puts their exported names on the package. The `__init__` runs later, into the same package
object, the first time someone asks the package for another name (e.g.
`clu.metric_writers.SummaryWriter`, which works where TensorFlow is installed and raises its
ImportError where it is not).
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import os
import pathlib
import pkgutil
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from PIL import Image
from tensorboardX import event_file_writer
from tensorboardX import summary as tbx_summary
from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

_PACKAGE = "clu.metric_writers"


def _register_package_lazily() -> None:
    """Puts `clu.metric_writers` into sys.modules with its `__init__` deferred (see above)."""
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)  # imports `clu` (empty __init__)
    package = importlib.util.module_from_spec(spec)
    submodules = {m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)}

    def complete(name: str):
        # Submodules and dunders are not package attributes until imported: report them
        # missing, so that the import system loads a submodule instead of the whole package.
        if name in submodules or name.startswith("__"):
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
        del package.__dict__["__getattr__"]
        try:
            spec.loader.exec_module(package)  # the real __init__: imports TensorFlow
        except BaseException:
            package.__getattr__ = complete  # e.g. no TensorFlow: the same error next time
            raise
        return getattr(package, name)

    package.__getattr__ = complete
    sys.modules[_PACKAGE] = package
    setattr(sys.modules["clu"], "metric_writers", package)


def clu_writers() -> types.SimpleNamespace:
    """clu's writer stack without TensorFlow.

    Returns:
      A namespace with clu's `MetricWriter`, `AsyncWriter`, `AsyncMultiWriter`,
      `ensure_flushes`, `MultiWriter` and `LoggingWriter` (the objects `clu.metric_writers`
      exports, which now has them without running its `__init__`).
    """
    _register_package_lazily()
    interface = importlib.import_module(f"{_PACKAGE}.interface")
    async_writer = importlib.import_module(f"{_PACKAGE}.async_writer")
    multi_writer = importlib.import_module(f"{_PACKAGE}.multi_writer")
    logging_writer = importlib.import_module(f"{_PACKAGE}.logging_writer")
    names = dict(
        MetricWriter=interface.MetricWriter, AsyncWriter=async_writer.AsyncWriter,
        AsyncMultiWriter=async_writer.AsyncMultiWriter, ensure_flushes=async_writer.ensure_flushes,
        MultiWriter=multi_writer.MultiWriter, LoggingWriter=logging_writer.LoggingWriter)
    package = sys.modules[_PACKAGE]
    for name, value in names.items():  # what the package's __init__ exports from these
        package.__dict__.setdefault(name, value)
    return types.SimpleNamespace(**names)


_clu = clu_writers()

# Buckets of a histogram when the caller names none (tf.summary.histogram's default).
DEFAULT_HISTOGRAM_BUCKETS = 30


def _plugin_metadata(plugin_name: str) -> summary_pb2.SummaryMetadata:
    """Metadata routing a summary to a TensorBoard plugin; `scalars`, `images`, `text` and
    `histograms` read version-0 plugin data, whose serialized form is empty."""
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


_DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
           np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64}


def tensor_proto(value: Any) -> tensor_pb2.TensorProto:
    """A TensorProto of a numpy value: float32/float64/int32/int64 as raw little-endian
    content, bytes or str (object arrays, or a scalar) as DT_STRING; other numeric types
    become float32."""
    array = np.asarray(value)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape])
    if array.dtype == object or array.dtype.kind in "SU":
        strings = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()]
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                      string_val=strings)
    if array.dtype not in _DTYPES:
        array = array.astype(np.float32)
    return tensor_pb2.TensorProto(dtype=_DTYPES[array.dtype], tensor_shape=shape,
                                  tensor_content=array.astype(array.dtype.newbyteorder("<")).tobytes())


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, C) image, C in 1, 3, 4."""
    if image.shape[-1] == 1:
        image = image[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def to_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 images: uint8 kept; floats (in [0, 1]) become round(255 x), clipped to [0, 255]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round(np.clip(images.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


class EventFileMetricWriter(_clu.MetricWriter):
    """clu `MetricWriter` writing TensorBoard event files with tensorboardX.

    Args:
      logdir: folder of the event file (created); each writer starts a new event file there.
      flush_secs: how often tensorboardX's writer thread flushes on its own (`flush()` and
        `close()` always do).
    """

    def __init__(self, logdir: str | os.PathLike, flush_secs: float = 30.0):
        super().__init__()
        self.logdir = pathlib.Path(logdir)
        self._writer = event_file_writer.EventFileWriter(str(self.logdir), flush_secs=flush_secs)

    def _add(self, step: int, tag: str, tensor, metadata: summary_pb2.SummaryMetadata) -> None:
        value = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)
        self._writer.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=[value])))

    def write_summaries(self, step: int, values: Mapping[str, Any],
                        metadata: Mapping[str, Any] | None = None):
        for key, value in values.items():
            md = (metadata or {}).get(key)
            if isinstance(md, bytes):
                md = summary_pb2.SummaryMetadata.FromString(md)
            self._add(step, key, tensor_proto(value),
                      md if md is not None else summary_pb2.SummaryMetadata())

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        md = _plugin_metadata("scalars")
        for key, value in scalars.items():
            self._add(step, key, tensor_proto(np.float32(value)), md)

    def write_images(self, step: int, images: Mapping[str, Any]):
        """images: key -> (N, H, W, C) or (H, W, C), C in 1, 3, 4; uint8, or floats in [0, 1]."""
        md = _plugin_metadata("images")
        for key, value in images.items():
            batch = to_uint8(value)
            if batch.ndim == 3:
                batch = batch[None]
            if batch.ndim != 4 or batch.shape[-1] not in (1, 3, 4):
                raise ValueError(f"image {key!r}: expected (N, H, W, C) with C in 1, 3, 4; got "
                                 f"shape {np.shape(value)}")
            height, width = batch.shape[1:3]
            strings = [str(width).encode(), str(height).encode(), *(_png(im) for im in batch)]
            self._add(step, key, tensor_proto(np.array(strings, dtype=object)), md)

    def write_texts(self, step: int, texts: Mapping[str, str]):
        md = _plugin_metadata("text")
        for key, text in texts.items():
            self._add(step, key, tensor_proto(np.array(str(text).encode(), dtype=object)), md)

    def write_histograms(self, step: int, arrays: Mapping[str, Any],
                         num_buckets: Mapping[str, int] | None = None):
        md = _plugin_metadata("histograms")
        for key, values in arrays.items():
            values = np.asarray(values, np.float64).ravel()
            buckets = (num_buckets or {}).get(key, DEFAULT_HISTOGRAM_BUCKETS)
            if values.size:
                counts, edges = np.histogram(values, bins=buckets)
                table = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
            else:
                table = np.zeros((0, 3), np.float64)
            self._add(step, key, tensor_proto(table), md)

    def write_hparams(self, hparams: Mapping[str, Any]):
        experiment, session_start, _ = tbx_summary.hparams(dict(hparams), {})
        for summary in (experiment, session_start):
            self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

    def write_videos(self, step: int, videos: Mapping[str, Any]):
        logging.log_first_n(logging.WARNING, "EventFileMetricWriter does not write videos.", 1)

    def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int):
        logging.log_first_n(logging.WARNING, "EventFileMetricWriter does not write audio.", 1)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


def create_writer(logdir: str | os.PathLike, *, asynchronous: bool = True) -> Any:
    """TensorBoard event files in `logdir`: an `EventFileMetricWriter`, inside clu's
    `AsyncWriter` (writes in a background thread; `flush()` waits) unless `asynchronous` is
    False."""
    writer = EventFileMetricWriter(logdir)
    return _clu.AsyncWriter(writer) if asynchronous else writer
