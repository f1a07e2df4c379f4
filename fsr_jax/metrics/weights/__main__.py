"""Fetch the metric weights now, or say where they are kept.

    python -m fsr_jax.metrics.weights install   # fetch, verify and convert every metric weight
    python -m fsr_jax.metrics.weights where     # print the cache folder

Each metric otherwise fetches its weights on first use (see fsr_jax.metrics.weights); `install`
does it all ahead of time, for CI and for machines that will be offline.
"""
import sys

from absl import app, flags

from fsr_jax import cli
from fsr_jax.metrics import weights
from fsr_jax.metrics.weights.install import install

COMMANDS = ("install", "where")


def define(fv: flags.FlagValues, argv) -> None:
    del fv, argv  # no flags: the command is the one positional argument


def run(fv: flags.FlagValues, args: list[str]) -> int:
    del fv
    if len(args) != 1 or args[0] not in COMMANDS:
        raise app.UsageError(f"expected one command, install or where; got {args}")
    if args[0] == "where":
        print(weights.cache_dir())
        return 0
    try:
        install()
    except (weights.MissingWeightsError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv, positional=True)


if __name__ == "__main__":
    main()
