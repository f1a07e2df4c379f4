"""Parameter tables of the networks of a config.

    python -m fsr_jax.models --summary [--config configs/teacher_student.py] [--config.model.sr.features=32]

Prints, for each network of the config (default: the paper's), the parameter count of every
top-level layer and the total. Parameters are built with `jax.eval_shape`, so this is instant
even at full size.
"""
from __future__ import annotations

import collections
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from fsr_jax import cli, config_checks, models


def define(fv: flags.FlagValues, argv) -> None:
    cli.define_config(fv, argv)
    flags.DEFINE_bool("summary", False, "Print the parameter tables.", flag_values=fv)


def parameter_table(module, example: jax.ShapeDtypeStruct) -> list[tuple[str, int]]:
    """(top-level layer name, parameter count) rows for `module` applied to `example`."""
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), example)
    counts: dict[str, int] = collections.OrderedDict()
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
        layer = str(path[0].key)
        counts[layer] = counts.get(layer, 0) + int(np.prod(leaf.shape))
    return sorted(counts.items(), key=lambda row: _natural_key(row[0]))


def _natural_key(name: str) -> tuple:
    """Sort key that puts block_2 before block_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def networks(cfg, hr_size: int = 64):
    """(name, module, example input) of every network the paper trains, at `hr_size` HR."""
    lr_size = hr_size // cfg.sr.scale
    hr = jax.ShapeDtypeStruct((1, hr_size, hr_size, 3), jnp.float32)
    lr = jax.ShapeDtypeStruct((1, lr_size, lr_size, 3), jnp.float32)
    inputs = {"d_lr": lr, "d_t": hr, "d_s": hr, "d_ds": lr}
    by_kind: dict[tuple[str, int], list[str]] = {}
    for pair, kind in models.discriminator_types(cfg.discriminator).items():
        by_kind.setdefault((kind, inputs[pair].shape[1]), []).append(pair)
    return [
        ("FeedbackSR (TNet, SNet)", models.build_sr(cfg), lr),
        ("Downsampler (DeNet, DSNet)", models.build_downsampler(cfg), hr),
        *[(f"{kind} at {size}x{size} ({', '.join(p.upper() for p in pairs)})",
           models.build_discriminator(cfg, pairs[0]), inputs[pairs[0]]) for (kind, size), pairs in by_kind.items()],
    ]


def run(fv: flags.FlagValues, args: list[str]) -> int:
    del args
    if not fv.summary:
        raise app.UsageError("nothing to do: pass --summary to print the parameter tables")
    problems = config_checks.non_positive_sizes(fv.config) + config_checks.non_finite_numbers(fv.config)
    try:
        models.discriminator_types(fv.config.model.discriminator)
    except ValueError as err:
        problems.append(str(err))
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 1
    cfg = fv.config.model
    for name, module, example in networks(cfg):
        rows = parameter_table(module, example)
        width = max(len(layer) for layer, _ in rows)
        print(f"\n{name}")
        for layer, count in rows:
            print(f"  {layer:<{width}}  {count:>12,}")
        print(f"  {'total':<{width}}  {sum(c for _, c in rows):>12,}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv, config=cli.PAPER_CONFIG)


if __name__ == "__main__":
    main()
