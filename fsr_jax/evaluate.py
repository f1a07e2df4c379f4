"""Evaluation of a trained run, as the paper's Tables 1 and 2.

`evaluate(config, workdir)` restores the SR networks of a checkpoint of W/teacher_student
(parameters only), or reads them from the exported weights files of `eval.weights` (then W is
only where results go, W/eval/weights-<step>/), runs TNet, SNet and the PIL-bicubic baseline
on every configured test set, and writes W/eval/<step>/: metrics.json, table.md,
images/<set>/<method>/<name>.png and grids/<set>_<k>.png (LR | bicubic | TNet | SNet | HR). SR outputs are rounded to 8 bits
before scoring, so the numbers are those of the saved PNGs. Every metric of the registry
(`fsr_jax.metrics.registry`) is scored, by name, on the sets of its kind: paired sets get FID
against their HR, LPIPS, PSNR and SSIM; real-LR sets FID against the HR training set and NIQE.
"""
from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging
from PIL import Image

from fsr_jax import config_checks, data, inference, metrics, observe, tables
from fsr_jax.metrics import registry


def eval_dir(workdir: str | pathlib.Path, step: int | str) -> pathlib.Path:
    """W/eval/<step>: where the evaluation of checkpoint `step` is written."""
    return pathlib.Path(workdir).expanduser() / "eval" / str(step)


def weight_files(weights: str) -> list[str]:
    """The files of an `eval.weights` value (comma-separated)."""
    return [w.strip() for w in weights.split(",") if w.strip()]


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return np.asarray(images, np.float32) / 255.0


def pair_scores(sr: np.ndarray, hr: np.ndarray, batch_size: int, scored: list[registry.Metric]) -> dict[str, float]:
    """{name: mean} of the PAIR metrics `scored` (PSNR, SSIM, LPIPS, ...) of uint8 (N, H, W, 3)
    SR faces against HR, computed together batch by batch."""
    if not scored:
        return {}

    def score(pairs):
        x, y = to_float(pairs[:, 0]), to_float(pairs[:, 1])
        return np.stack([m.fn(x, y) for m in scored], axis=1)

    means = inference.map_batches(score, np.stack([sr, hr], axis=1), batch_size).mean(axis=0)
    return {m.name: float(mean) for m, mean in zip(scored, means)}


def image_scores(images: np.ndarray, scored: list[registry.Metric]) -> dict[str, float]:
    """{name: mean} of the no-reference IMAGE metrics `scored` (NIQE, ...) of uint8 (N, H, W, 3)
    faces, scored one image at a time."""
    return {m.name: float(np.mean([m.fn(to_float(image)) for image in images])) for m in scored}


def features(images: np.ndarray, batch_size: int) -> np.ndarray:
    """Inception pool3 features (N, 2048) of uint8 (N, H, W, 3) faces."""
    return metrics.inception_features(to_float(images), batch_size=batch_size)


def hr_training_features(data_cfg: ml_collections.ConfigDict, limit: int, batch_size: int) -> np.ndarray:
    """Features of the HR training faces (the first `limit` by name; 0: all): the FID reference
    of real-LR sets (**Decision**: the paper does not say what their FID is scored against)."""
    from fsr_jax.data import datasets  # noqa: PLC0415 (TFDS only where data are read)

    faces, _ = datasets.read_faces(datasets.train_builders(data_cfg)[0])
    return features(faces[:limit or None], batch_size)


def score_set(outputs: dict[str, np.ndarray], hr: np.ndarray | None, reference, batch_size: int) -> dict:
    """Scores of each method's uint8 SR faces on one test set: every registered metric of the
    set's kind (`fsr_jax.metrics.registry`), stored under its name.

    Args:
      outputs: {method: uint8 (N, H, W, 3)}.
      hr: uint8 (N, H, W, 3) of a paired set, or None for a real-LR set.
      reference: () -> (M, 2048) features FID compares a real-LR set with.
      batch_size: faces per metric batch.

    Returns:
      {"kind": "paired" | "real", "n": N, "methods": {method: {FEATURES metrics' fields ("fid",
       "fid_n", "fid_n_ref"), then PAIR metrics' ("psnr", "ssim", "lpips": paired sets) and
       IMAGE metrics' ("niqe": real-LR sets)}}}.
    """
    kind = "paired" if hr is not None else "real"
    on_features = registry.scored_on(kind, registry.FEATURES)
    methods = list(outputs)
    if on_features:  # one Inception pass over every method's faces and the HR
        stacked = np.concatenate([outputs[m] for m in methods] + ([hr] if hr is not None else []))
        feats = np.split(features(stacked, batch_size), len(methods) + (hr is not None))
        ref = feats[-1] if hr is not None else reference()
    scores = {}
    on_pairs, on_images = registry.scored_on(kind, registry.PAIR), registry.scored_on(kind, registry.IMAGE)
    for i, method in enumerate(methods):
        scores[method] = {}
        for metric in on_features:
            value = metric.fn(feats[i], ref)
            scores[method].update(value if isinstance(value, dict) else {metric.name: float(value)})
        if on_pairs:
            scores[method].update(pair_scores(outputs[method], hr, batch_size, on_pairs))
        scores[method].update(image_scores(outputs[method], on_images))
    n = len(next(iter(outputs.values())))
    return {"kind": kind, "n": n, "methods": scores}


def write_images(folder: pathlib.Path, outputs: dict[str, np.ndarray], names: list[str]) -> None:
    """folder/<method>/<name stem>.png for every method's faces."""
    for method, faces in outputs.items():
        (folder / method).mkdir(parents=True, exist_ok=True)
        for face, name in zip(faces, names):
            Image.fromarray(face).save(folder / method / f"{pathlib.Path(name).stem}.png")


def write_grids(folder: pathlib.Path, set_name: str, columns: list[np.ndarray], per_grid: int) -> None:
    """folder/<set>_<k>.png: `per_grid` faces a row each, columns side by side (LR enlarged by
    pixel repetition); columns are uint8 (N, h, w, 3) of any sizes dividing the largest."""
    folder.mkdir(parents=True, exist_ok=True)
    size = max(c.shape[1] for c in columns)
    for k, start in enumerate(range(0, len(columns[0]), per_grid)):
        panels = [observe.to_panel(to_float(c[start:start + per_grid]), size) for c in columns]
        Image.fromarray(observe.image_grid(panels)).save(folder / f"{set_name}_{k:03d}.png")


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluate checkpoint `config.eval.step` (0: the newest) of W/teacher_student, or the files
    of `config.eval.weights`, on the test sets; write W/eval/<step>/ (weights: W/eval/weights-<step>/;
    see the module docstring) and return the metrics dict.

    The networks come from `inference.load_trained_sr`: a checkpoint is restored into the run's
    own model (a differing config.model is logged and ignored); weights files must match
    config.model.sr and the data's lr/hr sizes, and the module is built from config.model.

    Raises:
      ConfigError: bad eval settings, unknown test set names, or two weights files of one net.
      CheckpointError: naming the folder, for a missing or unreadable checkpoint; WeightsError
        (a CheckpointError) naming the file, for an unusable weights file or one of a net
        outside eval.nets when no file holds one of them.
      MissingWeightsError: naming the install command, when metric weights are missing.
    """
    config_checks.validate_eval(config)
    ev = config.eval
    if ev.weights:
        trained = inference.load_trained_sr(weights=weight_files(ev.weights), names=tuple(ev.nets),
                                            model_config=config.model, data_config=config.data)
        out = eval_dir(workdir, "weights-" + "-".join(map(str, sorted(set(trained.steps.values())))))
        source = ", ".join(f"{trained.origins[n]} (checkpoint {trained.steps[n]})" for n in trained.params)
    else:
        trained = inference.load_trained_sr(workdir, names=tuple(ev.nets), step=ev.step or None,
                                            model_config=config.model)
        out, source = eval_dir(workdir, trained.step), f"{workdir}, checkpoint {trained.step}"
    model, params, step = trained.model, trained.params, trained.step
    scale = model.scale
    names = tuple(ev.test_sets) or data.test_set_names(config.data)
    unknown = sorted(set(names) - set(data.test_set_names(config.data)))
    if not names or unknown:
        raise config_checks.ConfigError(
            f"eval.test_sets {list(names)}: {unknown or 'none'} unknown; data.test_sets has "
            f"{list(data.test_set_names(config.data))} (add one with --test_set=NAME=FOLDER)")
    writer = jax.process_index() == 0
    logging.info("evaluating %s: %s on %s", source, ", ".join(params), ", ".join(names))
    reference_cache = []

    def reference():
        if not reference_cache:
            reference_cache.append(hr_training_features(config.data, ev.fid_reference_images, ev.batch_size))
        return reference_cache[0]

    sets = {}
    for name in tqdm.tqdm(names, desc="test sets", unit=" sets"):
        test = data.load_test_set(config.data, name, ev.max_images or None)
        outputs = {"bicubic": inference.bicubic_upscale(test["lr"], scale)}
        for net, net_params in params.items():
            outputs[net] = inference.super_resolve(model, net_params, test["lr"], ev.batch_size, desc=f"{name} {net}")
        sets[name] = score_set(outputs, test["hr"], reference, ev.batch_size)
        if writer and ev.save_images:
            write_images(out / "images" / name, outputs, test["names"])
        if writer and ev.grid_faces:
            columns = [test["lr"], *outputs.values()] + ([test["hr"]] if test["hr"] is not None else [])
            write_grids(out / "grids", name, columns, ev.grid_faces)
    results = {"workdir": str(workdir), "step": step, "nets": list(params),
               **registry.settings(), "eval": ev.to_dict(), "sets": sets}
    if ev.weights:
        results["weights"] = trained.origins
    table = tables.results_table(results, source)
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(results, indent=2, default=list))
        (out / "table.md").write_text(table)
        logging.info("wrote %s and %s:\n%s", out / "metrics.json", out / "table.md", table)
    return results
