"""Benchmarks of fsr_jax; each subcommand prints one JSON object.

    python tools/benchmark.py data [--batch_size 256] [--steps 200] [--hr_dir D --lr_dir D]

`data`: HR+LR training pairs per second delivered by the input pipeline from the prepared
array_record datasets (the synthetic default unless --hr_dir/--lr_dir are given), once with
the decoded cache and once decoding PNGs from array_record on every step.

Imports nothing heavy at module level (no TensorFlow at all), so that further subcommands
can be added as functions registered in `SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time


def _time_pipeline(data_cfg, batch_size: int, steps: int, warmup: int) -> dict:
    """Pairs/s of `make_train_iterator` over `steps` batches after `warmup` batches."""
    from fsr_jax.data import make_train_iterator

    start = time.perf_counter()
    iterator = make_train_iterator(data_cfg, global_batch_size=batch_size, seed=0,
                                   process_index=0, process_count=1)
    for _ in range(warmup):
        next(iterator)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
    elapsed = time.perf_counter() - start
    iterator.close()
    assert batch["hr"].shape[0] == batch["lr"].shape[0] == batch_size
    return {
        "pairs_per_s": round(steps * batch_size / elapsed, 1),
        "cache_decoded": data_cfg.cache_decoded,
        "worker_count": data_cfg.worker_count,
        "read_threads": data_cfg.read_threads,
        "prefetch": data_cfg.prefetch,
        "setup_s": round(setup, 2),
        "num_hr": iterator.order.num_hr,
        "num_lr": iterator.order.num_lr,
    }


def data(args: argparse.Namespace) -> dict:
    """The `data` subcommand."""
    from absl import logging

    from fsr_jax.data import default_config

    logging.set_verbosity(logging.WARNING)
    cfg = default_config()
    cfg.progress = False
    if args.tfds_dir:
        cfg.tfds_dir = args.tfds_dir
    cfg.hr_dir, cfg.lr_dir = args.hr_dir, args.lr_dir
    runs = []
    modes = [(True, 0), (False, 0)] + ([(False, args.worker_count)] if args.worker_count else [])
    for cache, workers in modes:
        cfg.cache_decoded, cfg.worker_count = cache, workers
        cfg.read_threads = args.read_threads
        runs.append(_time_pipeline(cfg, args.batch_size, args.steps, args.warmup))
    return {
        "benchmark": "data",
        "source": "synthetic default" if args.hr_dir is None else f"{args.hr_dir} + {args.lr_dir}",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "runs": runs,
        "pairs_per_s": max(r["pairs_per_s"] for r in runs),
    }


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="input pipeline pairs/s from array_record")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--hr_dir", help="HR folder (default: synthetic faces)")
    p.add_argument("--lr_dir", help="LR folder (default: synthetic faces)")
    p.add_argument("--tfds_dir", help="prepared datasets (default: the data config's)")
    p.add_argument("--read_threads", type=int, default=2)
    p.add_argument("--worker_count", type=int, default=2,
                   help="grain worker processes of the third (uncached) run")


SUBCOMMANDS = {"data": (_data_parser, data)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in SUBCOMMANDS.values():
        add_parser(sub)
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
        result = SUBCOMMANDS[args.command][1](args)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
