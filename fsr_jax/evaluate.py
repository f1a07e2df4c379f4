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

import contextlib
import json
import pathlib
import time

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from fsr_jax import (checkpointing, config_checks, data, degradation_report, files, grids, inference, metrics,
                     pretrained, tables)
from fsr_jax.metrics import registry
from fsr_jax.weights_file import SR_NETS


def eval_dir(workdir: str | pathlib.Path, step: int | str) -> pathlib.Path:
    """W/eval/<step>: where the evaluation of checkpoint `step` is written."""
    return pathlib.Path(workdir).expanduser() / "eval" / str(step)


def weight_files(weights: str) -> list[str]:
    """The files of an `eval.weights` value: comma-separated, where `default` gives the shipped
    TNet and SNet (fsr_jax.pretrained, checked)."""
    files = []
    for entry in filter(None, (w.strip() for w in weights.split(","))):
        files += [str(pretrained.path(n)) for n in SR_NETS] if entry == pretrained.NAME else [entry]
    return files


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


def image_scores(images: np.ndarray, scored: list[registry.Metric], label: str = "") -> dict[str, float]:
    """{name: mean} of the no-reference IMAGE metrics `scored` (NIQE, ...) of uint8 (N, H, W, 3)
    faces, scored one image at a time under a progress bar per metric (`label` first)."""
    return {m.name: float(np.mean([m.fn(to_float(image)) for image in
                                   tqdm.tqdm(images, desc=f"{label} {m.name}".strip(), unit=" faces", leave=False)]))
            for m in scored}


@contextlib.contextmanager
def announced(what: str):
    """One log line before `what` and one with its wall time after: scoring a set is minutes."""
    logging.info("%s...", what)
    start = time.perf_counter()
    yield
    logging.info("%s: %.1f s", what, time.perf_counter() - start)


def features(images: np.ndarray, batch_size: int) -> np.ndarray:
    """Inception pool3 features (N, 2048) of uint8 (N, H, W, 3) faces."""
    return metrics.inception_features(to_float(images), batch_size=batch_size)


def hr_training_features(data_cfg: ml_collections.ConfigDict, limit: int, batch_size: int) -> np.ndarray:
    """Features of the HR training faces (the first `limit` by name; 0: all): the FID reference
    of real-LR sets (**Decision**: the paper does not say what their FID is scored against)."""
    from fsr_jax.data import datasets  # noqa: PLC0415 (TFDS only where data are read)

    faces, _ = datasets.read_faces(datasets.train_builders(data_cfg)[0])
    return features(faces[:limit or None], batch_size)


def score_set(outputs: dict[str, np.ndarray], hr: np.ndarray | None, reference, batch_size: int,
              label: str = "") -> dict:
    """Scores of each method's uint8 SR faces on one test set: every registered metric of the
    set's kind (`fsr_jax.metrics.registry`), stored under its name.

    Args:
      outputs: {method: uint8 (N, H, W, 3)}.
      hr: uint8 (N, H, W, 3) of a paired set, or None for a real-LR set.
      reference: () -> (M, 2048) features FID compares a real-LR set with.
      batch_size: faces per metric batch.
      label: the set's name, for the progress lines (one per metric group and method).

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
        with announced(f"{label}: Inception features of {len(stacked)} faces for "
                       f"{', '.join(m.name.upper() for m in on_features)}"):
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
            with announced(f"{label} {method}: {', '.join(m.name.upper() for m in on_pairs)}"):
                scores[method].update(pair_scores(outputs[method], hr, batch_size, on_pairs))
        scores[method].update(image_scores(outputs[method], on_images, f"{label} {method}"))
    n = len(next(iter(outputs.values())))
    return {"kind": kind, "n": n, "methods": scores}


def write_images(folder: pathlib.Path, outputs: dict[str, np.ndarray], names: list[str]) -> None:
    """folder/<method>/<name>.png for every method's faces, <name> unique per input file
    (`files.output_names`: a.png and a.jpg give a.png.png and a.jpg.png)."""
    unique = files.output_names([pathlib.Path(name) for name in names])
    for method, faces in outputs.items():
        for face, name in zip(faces, unique):
            files.write_png(folder / method / f"{name}.png", face)


def write_grids(folder: pathlib.Path, set_name: str, columns: dict[str, np.ndarray], per_grid: int) -> None:
    """folder/<set>_<k>.png: `per_grid` faces a row each, columns side by side under their titles
    (LR enlarged by pixel repetition); columns are {title: uint8 (N, h, w, 3)} of any sizes
    dividing the largest."""
    size = max(c.shape[1] for c in columns.values())
    for k, start in enumerate(range(0, len(next(iter(columns.values()))), per_grid)):
        panels = [grids.to_panel(to_float(c[start:start + per_grid]), size) for c in columns.values()]
        files.write_png(folder / f"{set_name}_{k:03d}.png", grids.titled_grid(panels, list(columns)))


def load_networks(config: ml_collections.ConfigDict, workdir: str) -> tuple[inference.TrainedSR | None,
                                                                          inference.TrainedNet | None, str, str]:
    """(the SR nets, DeNet, the name of the results folder under W/eval/, a description of the
    source) that `config.eval` asks for: from the files of `eval.weights`, or from the run in
    `workdir` (checkpoint `eval.step` of stage 2, whose DeNet is the one its teacher trained
    on; a run with stage 1 alone gives DeNet alone). Either may be None where not asked for
    or, for DeNet beside SR nets, where the run has none (logged)."""
    ev = config.eval
    sr_names = tuple(n for n in ev.nets if n in SR_NETS)
    if ev.weights:
        files = weight_files(ev.weights)
        loaded = inference.load_weights_files(files, tuple(ev.nets), config.model, config.data)
        if not loaded:
            raise inference.missing_nets_error(files, tuple(ev.nets))
        sr_loaded = {n: loaded[n] for n in sr_names if n in loaded}
        trained = inference.TrainedSR.from_files(sr_loaded) if sr_loaded else None
        denet = loaded.get("denet")
        steps = sorted({t.step for t in loaded.values()})
        source = ", ".join(f"{t.origin} (checkpoint {t.step})" for t in loaded.values())
        return trained, denet, "weights-" + "-".join(map(str, steps)), source
    first = inference.stage_dir(workdir, inference.DEGRADATION.name) / "checkpoints"
    stage1_alone = (checkpointing.latest_step(inference.stage_dir(workdir) / "checkpoints") is None
                    and checkpointing.latest_step(first) is not None)
    trained = None
    if sr_names and not (stage1_alone and "denet" in ev.nets):
        trained = inference.load_trained_sr(workdir, names=sr_names, step=ev.step or None, model_config=config.model)
    denet = None
    if "denet" in ev.nets:
        try:
            denet = inference.load_trained_denet(workdir, trained.step if trained else None)
        except checkpointing.CheckpointError as err:
            if trained is None:
                raise
            logging.warning("no DeNet report: %s", err)
    if trained is not None:
        return trained, denet, str(trained.step), f"{workdir}, checkpoint {trained.step}"
    return None, denet, f"degradation-{denet.step}", f"{denet.origin}, checkpoint {denet.step}"


def denet_section(denet: inference.TrainedNet, tests: dict[str, dict], batch_size: int) -> dict | None:
    """The DeNet report (`degradation_report.report`) on the first test set with HR faces and the
    first of real LR faces alone, with its set names, DeNet's origin and the contact sheet; None
    (logged) when the test sets lack either kind."""
    hr_set = next((n for n, t in tests.items() if t["hr"] is not None), None)
    real_set = next((n for n, t in tests.items() if t["hr"] is None), None)
    if hr_set is None or real_set is None:
        logging.warning("no DeNet report: it needs a test set with HR faces and one of real LR faces alone; "
                        "the test sets are %s", list(tests))
        return None
    hr, real = tests[hr_set]["hr"], tests[real_set]["lr"]
    lr = degradation_report.denet_lr(denet.model, denet.params, hr, batch_size)
    result = degradation_report.report(hr, real, lr, lambda faces: features(faces, batch_size))
    sheet = degradation_report.contact_sheet(hr, lr, real)
    return {"hr_set": hr_set, "real_set": real_set, "origin": denet.origin, "step": denet.step, **result,
            "sheet": sheet}


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluate checkpoint `config.eval.step` (0: the newest) of W/teacher_student, or the files
    of `config.eval.weights`, on the test sets; write W/eval/<step>/ (weights: W/eval/weights-<step>/;
    a run of stage 1 alone: W/eval/degradation-<step>/; see the module docstring) and return the
    metrics dict.

    The networks come from `load_networks`: a checkpoint is restored into the run's own model
    (a differing config.model is logged and ignored); weights files must match config.model and
    the data's lr/hr sizes, and the modules are built from config.model.

    Raises:
      ConfigError: bad eval settings, unknown test set names, or two weights files of one net.
      CheckpointError: naming the folder, for a missing or unreadable checkpoint; WeightsError
        (a CheckpointError) naming the file, for an unusable weights file or one of a net
        outside eval.nets when no file holds one of them.
      MissingWeightsError: naming the install command, when metric weights are missing.
    """
    config_checks.validate_eval(config)
    ev = config.eval
    trained, denet, folder, source = load_networks(config, workdir)
    out = eval_dir(workdir, folder)
    names = tuple(ev.test_sets) or data.test_set_names(config.data)
    unknown = sorted(set(names) - set(data.test_set_names(config.data)))
    if not names or unknown:
        raise config_checks.ConfigError(
            f"eval.test_sets {list(names)}: {unknown or 'none'} unknown; data.test_sets has "
            f"{list(data.test_set_names(config.data))} (add one with --test_set=NAME=FOLDER)")
    writer = jax.process_index() == 0
    nets = list(trained.params) if trained else []
    logging.info("evaluating %s: %s on %s", source, ", ".join(nets + (["denet"] if denet else [])), ", ".join(names))
    reference_cache = []

    def reference():
        if not reference_cache:
            reference_cache.append(hr_training_features(config.data, ev.fid_reference_images, ev.batch_size))
        return reference_cache[0]

    sets, tests = {}, {}
    for name in tqdm.tqdm(names, desc="test sets", unit=" sets"):
        test = tests[name] = data.load_test_set(config.data, name, ev.max_images or None)
        if trained is None:
            continue
        outputs = {"bicubic": inference.bicubic_upscale(test["lr"], trained.model.scale)}
        for net, net_params in trained.params.items():
            outputs[net] = inference.super_resolve(trained.model, net_params, test["lr"], ev.batch_size,
                                                   desc=f"{name} {net}")
        sets[name] = score_set(outputs, test["hr"], reference, ev.batch_size, name)
        if writer and ev.save_images:
            write_images(out / "images" / name, outputs, test["names"])
        if writer and ev.grid_faces:
            columns = {"LR": test["lr"], **{tables.METHOD_NAMES[m].split(" (")[0]: faces for m, faces in outputs.items()}}
            if test["hr"] is not None:
                columns["HR"] = test["hr"]
            write_grids(out / "grids", name, columns, ev.grid_faces)
    results = {"workdir": str(workdir), "folder": folder, "step": trained.step if trained else None, "nets": nets,
               **registry.settings(), "eval": ev.to_dict(), "sets": sets}
    if ev.weights:
        results["weights"] = {**(trained.origins if trained else {}), **({"denet": denet.origin} if denet else {})}
    report = denet_section(denet, tests, ev.batch_size) if denet is not None else None
    parts = [tables.results_table(results, source)] if trained else [f"# {source}\n"]
    if report is not None:
        sheet = report.pop("sheet")
        results["denet"] = report
        parts.append(degradation_report.markdown(report, report["hr_set"], report["real_set"]))
        if writer:
            files.write_png(out / "grids" / "denet_sheet.png", sheet)
    table = "\n".join(parts)
    if writer:
        files.write_text(out / "metrics.json", json.dumps(results, indent=2, default=list))
        files.write_text(out / "table.md", table)
        logging.info("wrote %s and %s:\n%s", out / "metrics.json", out / "table.md", table)
    return results
