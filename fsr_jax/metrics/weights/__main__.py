"""`python -m fsr_jax.metrics.weights install`: fetch and convert every metric weight into the cache now."""
import argparse
import sys

from fsr_jax.metrics import weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fsr_jax.metrics.weights", description=weights.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "where"],
                        help="install: fetch, verify and convert every weight now; where: print the cache folder")
    args = parser.parse_args(argv)
    if args.command == "where":
        print(weights.cache_dir())
        return 0
    try:
        weights.install()
    except (weights.MissingWeightsError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
