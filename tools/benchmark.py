"""Benchmarks of fsr_jax; each subcommand prints one JSON object.

    python tools/benchmark.py data [--batch_size 256] [--steps 200] [--hr_dir D --lr_dir D]
    python tools/benchmark.py train [--batch_size 256] [--dtype bfloat16] [--projection dense]
    python tools/benchmark.py infer [--batch_size 256] [--dtype float32]

`train`: stage-2 training images/s of the jitted step (TNet, SNet, DSNet and their three
discriminators, DeNet frozen) on device-resident random faces, over every local device; the
share of step time spent in the edge priors (the same step timed with edges=()); FLOPs per
image from XLA's cost analysis and the implied utilisation of `--peak_tflops`.
`infer`: SNet faces/s (16x16 -> 64x64, all three iterations, last image returned).
Both use the paper's full-size networks unless `--small`; they need JAX, Flax, optax,
ml-collections and OpenCV only (no TensorFlow, TFDS or grain).

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
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs/, fsr_jax/


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


def _model_config(args):
    """The paper's config (or the smoke sizes with --small) with the benchmark's overrides."""
    from configs import smoke, teacher_student

    config = (smoke if args.small else teacher_student).get_config()
    config.model.dtype = args.dtype
    config.model.sr.projection = args.projection
    if args.edges is not None:
        config.model.sr.edges = tuple(e for e in args.edges.split(",") if e)
    return config


def _seconds_per_call(call, steps: int, warmup: int) -> float:
    """Wall seconds per `call()` over `steps` calls after `warmup`, waiting for the device."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(call())
    start = time.perf_counter()
    for _ in range(steps):
        out = call()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def _device_info() -> dict:
    import jax

    device = jax.devices()[0]
    return {"device": getattr(device, "device_kind", device.platform), "devices": jax.device_count(),
            "jax": jax.__version__, "machine": platform.platform()}


def _stage2_step_seconds(config, batch_size: int, steps: int, warmup: int) -> tuple[float, float | None]:
    """(seconds per stage-2 step, XLA's FLOPs per step) at `batch_size` over all devices."""
    import jax
    import jax.numpy as jnp

    from fsr_jax.mesh import batch_sharding, data_mesh, replicated
    from fsr_jax.steps import STAGE2, Nets, init_state, make_optimizer, stage_step

    mesh = data_mesh()
    nets = Nets.from_config(config.model)
    tx = make_optimizer(config.optimizer, steps_per_epoch=1000)
    frozen = {"denet": nets.down.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))["params"]}
    repl = replicated(mesh)
    with jax.set_mesh(mesh):
        state = jax.jit(lambda f: init_state(STAGE2, config.stage2, nets, tx, 0, 64, 16, f),
                        out_shardings=repl)(frozen)
        keys = jax.random.split(jax.random.key(2))
        batch = {"hr": jax.random.uniform(keys[0], (batch_size, 64, 64, 3)),
                 "lr": jax.random.uniform(keys[1], (batch_size, 16, 16, 3))}
        batch = jax.device_put(batch, batch_sharding(mesh))
        step = jax.jit(stage_step(STAGE2, config, nets, tx), donate_argnums=0,
                       out_shardings=(repl, repl))
        compiled = step.lower(state, batch).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"]) if cost and "flops" in cost else None

        def advance():
            nonlocal state
            state, metrics = step(state, batch)
            return metrics

        seconds = _seconds_per_call(advance, steps, warmup)
    return seconds, flops


def train_benchmark(args: argparse.Namespace) -> dict:
    """The `train` subcommand."""
    config = _model_config(args)
    seconds, flops = _stage2_step_seconds(config, args.batch_size, args.steps, args.warmup)
    result = {"benchmark": "train", "stage": "teacher_student", "batch_size": args.batch_size,
              "dtype": args.dtype, "projection": args.projection, "small": args.small,
              "step_ms": round(1000 * seconds, 2),
              "images_per_s": round(args.batch_size / seconds, 1), **_device_info()}
    if flops:
        result["gflop_per_image"] = round(flops / args.batch_size / 1e9, 2)
        result["achieved_tflops"] = round(flops / seconds / 1e12, 2)
        if args.peak_tflops:
            result["utilisation"] = round(flops / seconds / 1e12 / args.peak_tflops, 4)
    if args.edge_share:
        config.model.sr.edges = ()
        plain, _ = _stage2_step_seconds(config, args.batch_size, args.steps, args.warmup)
        result["step_ms_without_edges"] = round(1000 * plain, 2)
        result["edge_share"] = round(max(seconds - plain, 0.0) / seconds, 4)
    import resource

    result["peak_host_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def infer_benchmark(args: argparse.Namespace) -> dict:
    """The `infer` subcommand."""
    import jax

    from fsr_jax import models
    from fsr_jax.mesh import batch_sharding, data_mesh, replicated

    config = _model_config(args)
    net = models.build_sr(config.model)
    mesh = data_mesh()
    with jax.set_mesh(mesh):
        lr = jax.device_put(jax.random.uniform(jax.random.key(0), (args.batch_size, 16, 16, 3)),
                            batch_sharding(mesh))
        params = jax.jit(lambda x: net.init(jax.random.key(1), x[:1]), out_shardings=replicated(mesh))(lr)
        apply = jax.jit(lambda p, x: net.apply(p, x)[-1])
        seconds = _seconds_per_call(lambda: apply(params, lr), args.steps, args.warmup)
    return {"benchmark": "infer", "net": "SNet", "batch_size": args.batch_size, "dtype": args.dtype,
            "projection": args.projection, "small": args.small,
            "batch_ms": round(1000 * seconds, 2),
            "faces_per_s": round(args.batch_size / seconds, 1), **_device_info()}


def _model_parser(name: str, help_: str):
    def add(sub) -> None:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--batch_size", type=int, default=256)
        p.add_argument("--steps", type=int, default=20)
        p.add_argument("--warmup", type=int, default=3)
        p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
        p.add_argument("--projection", choices=("dense", "transpose"), default="dense")
        p.add_argument("--small", action="store_true", help="the smoke config's tiny networks")
        p.add_argument("--edges", help="edge priors, e.g. '' or 'canny' (default: the config's)")
        if name == "train":
            p.add_argument("--peak_tflops", type=float, default=0.0,
                           help="the device's peak for --dtype, for the utilisation figure")
            p.add_argument("--no_edge_share", dest="edge_share", action="store_false",
                           help="skip the second timing with edges=()")
    return add


SUBCOMMANDS = {
    "data": (_data_parser, data),
    "train": (_model_parser("train", "stage-2 training images/s"), train_benchmark),
    "infer": (_model_parser("infer", "SNet inference faces/s"), infer_benchmark),
}


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
