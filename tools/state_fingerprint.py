"""Fingerprints of trained parameters: a refactor of the training code must leave them unchanged.

Trains the smoke config (tiny networks, synthetic faces, fixed seed) in each training variant
(the paper's two stages; the cycle teacher; no cycle; bicubic pairs), then prints, per variant
and stage, the SHA-256 of every network's final parameters (float32 bytes, keys sorted) as JSON.
Run it before and after a change to the training code on the same machine and JAX version; equal
hashes mean equal training, to the last bit.

    python tools/state_fingerprint.py [--output fingerprints.json] [--variants paper,no_cycle]

A few minutes on a CPU (XLA compiles each variant's step once).
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import tempfile

import jax
import numpy as np
from absl import flags

from configs import smoke
from fsr_jax import checkpointing, cli, train

#: Variant name -> config overrides (field path -> value) on top of configs/smoke.py.
VARIANTS = {
    "paper": {},
    "cycle_teacher": {"stages": ("teacher_student",), "teacher_student.teacher": "cycle", "teacher_student.student": False},
    "no_cycle": {"stages": ("teacher_student",), "teacher_student.teacher": "bicubic", "teacher_student.cycle": False},
    "bicubic_pairs": {"stages": ("teacher_student",), "teacher_student.teacher": "bicubic"},
}


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("output", "", "also write the JSON here", flag_values=fv)
    flags.DEFINE_list("variants", list(VARIANTS), "variants to train", flag_values=fv)


def params_digest(params) -> str:
    """SHA-256 of a parameter tree: its leaves' float32 bytes in sorted key-path order."""
    digest = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params), key=lambda p: jax.tree_util.keystr(p[0])):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()


def fingerprint(overrides: dict, workdir: pathlib.Path) -> dict[str, dict[str, str]]:
    """{stage: {network: digest}} after training the smoke config with `overrides` in `workdir`."""
    config = smoke.get_config()
    for field, value in overrides.items():
        section, _, name = field.rpartition(".")
        (config[section] if section else config)[name] = value
    config.train.compilation_cache = ""
    config.train.images_every = 10**6  # image summaries read the parameters, never change them
    train.train_and_evaluate(config, str(workdir))
    out = {}
    for stage in config.stages:
        folder = workdir / stage / "checkpoints"
        names, _ = checkpointing.saved_networks(folder)
        params, step = checkpointing.restore_params(folder, names)
        out[stage] = {"step": step, **{n: params_digest(params[n]) for n in names}}
    return out


def run(fv: flags.FlagValues, args) -> None:
    del args
    unknown = sorted(set(fv.variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"state_fingerprint: unknown variants {unknown}; known: {sorted(VARIANTS)}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in fv.variants:
            results[name] = fingerprint(VARIANTS[name], pathlib.Path(tmp) / name)
    text = json.dumps({"jax": jax.__version__, "backend": jax.default_backend(), **results}, indent=2)
    print(text)
    if fv.output:
        pathlib.Path(fv.output).write_text(text + "\n")


if __name__ == "__main__":
    cli.run(define, run)
