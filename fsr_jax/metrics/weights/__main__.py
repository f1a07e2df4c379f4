"""`python -m fsr_jax.metrics.weights install`: fetch and convert the metric weights into the cache."""
import argparse
import subprocess
import sys

from fsr_jax.metrics import weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fsr_jax.metrics.weights", description=weights.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "where"],
                        help="install: fetch and convert the weights; where: print the cache folder")
    args = parser.parse_args(argv)
    if args.command == "where":
        print(weights.cache_dir())
        return 0
    try:
        weights.install()
    except (ImportError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
