"""Prepare the face datasets ahead of training (otherwise the main job prepares them on first use).

Takes the main job's config flags, so the datasets prepared are the ones training with the same
flags reads:

    python -m fsr_jax.data.prepare --config configs/teacher_student.py \\
        --config.data.hr_dir=faces/train/HIGH --config.data.lr_dir=faces/train/LOW \\
        --test_set celeba=faces/test/celeba --test_set widerface=faces/test/widerface

--config defaults to the paper's config; every `data` field is a --config.data.<field>
override (tfds_dir, on_bad_image, on_wrong_size, hr_size, lr_size, synthetic_hr, ...).
Without data folders it prepares the config's synthetic default set (and its test sets when
no --test_set is given). Every image is checked first (progress bar); bad files stop the
command with a list unless --config.data.on_bad_image=skip. Prints one JSON line per
prepared dataset.
"""
from __future__ import annotations

import json
import sys

from absl import flags

from fsr_jax import cli
from fsr_jax.data.config import add_test_sets


def define(fv: flags.FlagValues, argv) -> None:
    cli.define_config(fv, argv)
    cli.define_test_sets(fv)


def config_from_flags(fv: flags.FlagValues):
    """The `data` ConfigDict of the parsed flags: the config's, with the --test_set sets added."""
    data_cfg = fv.config.data
    add_test_sets(data_cfg, fv.test_set)
    return data_cfg


def data_config(argv: list[str]):
    """The `data` ConfigDict the command prepares for `argv` (the arguments after the program
    name); cli.FlagsError when they cannot be parsed."""
    return config_from_flags(cli.parse(define, argv, config=cli.PAPER_CONFIG))


def run(fv: flags.FlagValues, args: list[str]) -> int:
    del args
    from fsr_jax.data import datasets  # noqa: PLC0415 (TFDS on first use)

    try:
        prepared = datasets.prepare_all(config_from_flags(fv))
    except ValueError as e:  # DataError included: bad files, missing folders
        print(f"error: {e}", file=sys.stderr)
        return 1
    for builder in prepared:
        split = next(iter(builder.info.splits))
        print(json.dumps({"dataset": builder.name, "config": getattr(builder.builder_config,
                                                                     "name", None),
                          "examples": builder.info.splits[split].num_examples,
                          "dir": str(builder.data_dir)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv, config=cli.PAPER_CONFIG, info_logs=True)


if __name__ == "__main__":
    main()
