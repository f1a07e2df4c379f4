"""Prepare the face datasets ahead of training (otherwise they are prepared on first use).

    python -m fsr_jax.data.prepare --hr_dir faces/train/HIGH --lr_dir faces/train/LOW \\
        --test celeba=faces/test/celeba --test widerface=faces/test/widerface \\
        --tfds_dir ~/.cache/fsr_jax/tfds

Without --hr_dir/--lr_dir it prepares the synthetic default set (and its test sets when no
--test is given). Every image is checked first (progress bar); bad files stop the command
with a list unless --on_bad_image=skip. Prints one JSON line per prepared dataset.
"""
from __future__ import annotations

import argparse
import json
import sys

from absl import logging

from fsr_jax.data.config import default_config


def parse_test(spec: str) -> tuple[str, str]:
    """'name=path' -> (name, path)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--test expects name=path, got {spec!r}")
    return name, path


def config_from_args(argv=None):
    """The `data` ConfigDict described by the command line."""
    defaults = default_config()
    parser = argparse.ArgumentParser(
        prog="python -m fsr_jax.data.prepare", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--hr_dir", help="folder of HR training faces (e.g. HIGH/)")
    parser.add_argument("--lr_dir", help="folder of real LR training faces (e.g. LOW/)")
    parser.add_argument("--test", action="append", type=parse_test, default=[],
                        metavar="NAME=PATH", help="test folder with LR/ and optional HR/")
    parser.add_argument("--tfds_dir", default=defaults.tfds_dir)
    parser.add_argument("--on_bad_image", choices=("error", "skip"),
                        default=defaults.on_bad_image)
    parser.add_argument("--on_wrong_size", choices=("resize", "error"),
                        default=defaults.on_wrong_size)
    parser.add_argument("--hr_size", type=int, default=defaults.hr_size)
    parser.add_argument("--lr_size", type=int, default=defaults.lr_size)
    parser.add_argument("--synthetic_hr", type=int, default=defaults.synthetic_hr)
    parser.add_argument("--synthetic_lr", type=int, default=defaults.synthetic_lr)
    parser.add_argument("--synthetic_test", type=int, default=defaults.synthetic_test)
    args = parser.parse_args(argv)
    cfg = defaults
    for field in ("hr_dir", "lr_dir", "tfds_dir", "on_bad_image", "on_wrong_size", "hr_size",
                  "lr_size", "synthetic_hr", "synthetic_lr", "synthetic_test"):
        setattr(cfg, field, getattr(args, field))
    for name, path in args.test:
        cfg.test_sets[name] = path
    return cfg


def main(argv=None) -> int:
    logging.set_verbosity(logging.INFO)
    cfg = config_from_args(argv)
    from fsr_jax.data import datasets

    try:
        prepared = datasets.prepare_all(cfg)
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


if __name__ == "__main__":
    sys.exit(main())
