"""TFDS builders of the face datasets: array_record files of encoded PNG bytes.

Images are always handed to TFDS as encoded PNG bytes, so preparing needs no TensorFlow, and
read back with `as_data_source` (numpy, OpenCV decoding). Records keep the source file name
and the folder's order (sorted names; shuffling disabled, integer keys). What a folder check
dropped or changed is stored in the dataset's metadata (`metadata.json`), so later runs can
log it again.

A preparation shows one progress bar (`label`: what is prepared), advanced while each folder
is checked and then while the records are written; TFDS's own console messages (a "Downloading
and preparing dataset Unknown size" line, though nothing downloads, and its bars) are off.

- `FaceFolder`: a folder of faces of one size (HR `HIGH/` or real LR `LOW/`), split 'train'
  of {'image': uint8 (size, size, 3), 'name': file name}.
- `FaceTestFolder`: a test folder with `LR/` and optional `HR/` (config 'lr_only' or
  'paired'), split 'test' of {'lr': (lr_size,)*2 + (3,), 'hr' (paired only), 'name'}.
- `SyntheticFaces`: the generated default set (configs 'hr', 'lr', 'test_paired',
  'test_lr'), with the same features as the two above.
"""
from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from absl import logging

from fsr_jax.data import images, synthetic

_MANUAL = "Pass the folder of images as manual_dir (fsr_jax.data.prepare does this)."


class _Quiet(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder without TFDS's download messages, which would be false here (nothing
    downloads; the sizes are unknown): the caller logs one line of its own instead."""

    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def _progress_bar(self, label: str, enabled: bool) -> tqdm.tqdm:
        """The one progress bar of this preparation; phases are set with reset + postfix."""
        return tqdm.tqdm(desc=f"preparing {label}", unit=" images", disable=not enabled,
                         leave=True)


def _advance(records, bar: tqdm.tqdm, phase: str, total: int):
    """Yields `records`, advancing `bar` (reset to `total`, postfix `phase`); closes it."""
    bar.reset(total=total)
    bar.set_postfix_str(phase)
    try:
        for record in records:
            yield record
            bar.update()
    finally:
        bar.close()


def _scan_metadata(scan: images.FolderScan) -> dict:
    """JSON-able record of a folder check, kept in the dataset's metadata."""
    return {
        "folder": str(scan.folder),
        "kept": len(scan.good),
        "bad": [list(b) for b in scan.bad],
        "ignored": len(scan.ignored),
        "resized": len(scan.resized),
        "changes": dict(scan.changes),
        "summary": scan.summary(),
    }


class FaceFolder(_Quiet):
    """A folder of face images at one size (checked and normalised by `images.scan_folder`)."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL

    def __init__(self, *, size: int, on_bad_image: str, on_wrong_size: str,
                 max_pixels: int | None = None, progress: bool = True, label: str = "faces",
                 **kwargs):
        self._size = size
        self._policy = dict(on_bad_image=on_bad_image, on_wrong_size=on_wrong_size,
                            max_pixels=max_pixels)
        self._progress, self._label = progress, label
        super().__init__(**kwargs)
        self._original_state.update(size=size, progress=progress, label=label,
                                    **self._policy)  # pickling

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Face images of one size, as 8-bit RGB PNG, with source file names.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(self._size, self._size, 3)),
                "name": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        bar = self._progress_bar(self._label, self._progress)
        try:
            scan = images.scan_folder(dl_manager.manual_dir, self._size, bar=bar, **self._policy)
        except BaseException:
            bar.close()
            raise
        self.info.metadata["scans"] = {"image": _scan_metadata(scan)}
        return {"train": _advance(self._generate_examples(scan.good), bar, "writing",
                                  len(scan.good))}

    def _generate_examples(self, paths):
        for index, path in enumerate(paths):
            yield index, {"image": images.check_image(path, self._size,
                                                      self._policy["max_pixels"]).png,
                          "name": path.name}


class FaceTestFolder(_Quiet):
    """A test folder: `LR/` and, for config 'paired', `HR/` with the same file names."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="lr_only"),
                       tfds.core.BuilderConfig(name="paired")]

    def __init__(self, *, hr_size: int, lr_size: int, on_bad_image: str, on_wrong_size: str,
                 max_pixels: int | None = None, progress: bool = True,
                 label: str = "test faces", **kwargs):
        self._sizes = {"hr": hr_size, "lr": lr_size}
        self._policy = dict(on_bad_image=on_bad_image, on_wrong_size=on_wrong_size,
                            max_pixels=max_pixels)
        self._progress, self._label = progress, label
        super().__init__(**kwargs)
        self._original_state.update(hr_size=hr_size, lr_size=lr_size, progress=progress,
                                    label=label, **self._policy)  # pickling

    @property
    def _parts(self) -> tuple[str, ...]:
        return ("lr", "hr") if self.builder_config.name == "paired" else ("lr",)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {p: tfds.features.Image(shape=(self._sizes[p], self._sizes[p], 3))
                    for p in self._parts}
        features["name"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            description="A face test set: LR faces and, when paired, their HR faces.",
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = pathlib.Path(dl_manager.manual_dir)
        bar = self._progress_bar(self._label, self._progress)
        try:
            scans = {p: images.scan_folder(root / p.upper(), self._sizes[p], bar=bar,
                                           **self._policy)
                     for p in self._parts}
            names = sorted(path.name for path in scans["lr"].good)
            if "hr" in scans:
                names = _pair_names(root, scans["lr"], scans["hr"])
        except BaseException:
            bar.close()
            raise
        self.info.metadata["scans"] = {p: _scan_metadata(s) for p, s in scans.items()}
        return {"test": _advance(self._generate_examples(root, names), bar, "writing",
                                 len(names))}

    def _generate_examples(self, root: pathlib.Path, names):
        for index, name in enumerate(names):
            example = {p: images.check_image(root / p.upper() / name, self._sizes[p],
                                             self._policy["max_pixels"]).png
                       for p in self._parts}
            example["name"] = name
            yield index, example


def _pair_names(root: pathlib.Path, lr: images.FolderScan, hr: images.FolderScan) -> list[str]:
    """Sorted names present in both LR/ and HR/; a pair with a skipped bad file is dropped.

    Raises:
      DataError: naming the files that have no counterpart at all.
    """
    lr_names, hr_names = {p.name for p in lr.good}, {p.name for p in hr.good}
    skipped = {n for n, _ in lr.bad + hr.bad}
    missing = sorted(n for n in lr_names ^ hr_names if n not in skipped)
    if missing:
        listed = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
        raise images.DataError(
            f"test folder {root}: {len(missing)} files are in only one of LR/ and HR/ (both must "
            f"hold the same file names): {listed}")
    orphans = sorted(lr_names ^ hr_names)
    if orphans:
        logging.warning("test folder %s: %d pairs dropped because one of their files was skipped:"
                        " %s", root, len(orphans), ", ".join(orphans))
    return sorted(lr_names & hr_names)


class SyntheticFaces(_Quiet):
    """The generated default faces (see `fsr_jax.data.synthetic`), deterministic by seed.

    Configs: 'hr' (HR training faces), 'lr' (degraded "real" LR training faces), 'test_paired'
    (HR test faces + their PIL-bicubic LR), 'test_lr' (degraded LR test faces, no HR).
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n)
                       for n in ("hr", "lr", "test_paired", "test_lr")]

    def __init__(self, *, count: int, seed: int, hr_size: int, lr_size: int,
                 progress: bool = True, label: str = "synthetic faces", **kwargs):
        self._count, self._seed = count, seed
        self._hr_size, self._lr_size = hr_size, lr_size
        self._progress, self._label = progress, label
        super().__init__(**kwargs)
        self._original_state.update(count=count, seed=seed, hr_size=hr_size, lr_size=lr_size,
                                    progress=progress, label=label)  # pickling

    def _info(self) -> tfds.core.DatasetInfo:
        hr = tfds.features.Image(shape=(self._hr_size, self._hr_size, 3))
        lr = tfds.features.Image(shape=(self._lr_size, self._lr_size, 3))
        features = {
            "hr": {"image": hr},
            "lr": {"image": lr},
            "test_paired": {"lr": lr, "hr": hr},
            "test_lr": {"lr": lr},
        }[self.builder_config.name]
        features["name"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            description="Synthetic faces generated by fsr_jax.data.synthetic.",
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        split = "train" if self.builder_config.name in ("hr", "lr") else "test"
        self.info.metadata["synthetic"] = {"count": self._count, "seed": self._seed}
        bar = self._progress_bar(self._label, self._progress)
        return {split: _advance(self._generate_examples(), bar, "drawing", self._count)}

    def _example(self, index: int) -> dict:
        """The record of face `index` of this config, as PNG bytes."""
        seed, hr_size, lr_size = self._seed, self._hr_size, self._lr_size
        kind = self.builder_config.name
        if kind == "hr":
            return {"image": images.encode_png(synthetic.hr_face(seed, index, hr_size))}
        if kind == "lr":
            return {"image": images.encode_png(synthetic.lr_face(seed, index, hr_size, lr_size))}
        if kind == "test_paired":
            hr = synthetic.hr_face(seed, index, hr_size, stream=synthetic.STREAM_TEST_HR)
            return {"hr": images.encode_png(hr),
                    "lr": images.encode_png(images.resize_bicubic(hr, lr_size))}
        lr = synthetic.lr_face(seed, index, hr_size, lr_size, stream=synthetic.STREAM_TEST_LR)
        return {"lr": images.encode_png(lr)}

    def _generate_examples(self):
        kind = self.builder_config.name
        for index in range(self._count):
            name = f"synthetic_{kind}_{index:06d}.png"
            yield index, {**self._example(index), "name": name}


def read_all(source, keys: tuple[str, ...], chunk: int = 1024) -> dict[str, np.ndarray | list]:
    """Decodes every record of a TFDS data source into arrays.

    Returns:
      {key: uint8 (N, S, S, 3) for each image key, 'names': list[str] of N file names}.
    """
    parts = {k: [] for k in keys}
    names = []
    for start in range(0, len(source), chunk):
        records = source.__getitems__(list(range(start, min(start + chunk, len(source)))))
        for k in keys:
            parts[k].extend(r[k] for r in records)
        names.extend(r["name"].decode() if isinstance(r["name"], bytes) else r["name"]
                     for r in records)
    out = {k: np.stack(v) for k, v in parts.items()}
    out["names"] = names
    return out
