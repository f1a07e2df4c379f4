"""Benchmarks of fsr_jax; each subcommand prints one JSON object.

    python tools/benchmark.py data [--batch_size 256] [--steps 200] [--hr_dir D --lr_dir D]
    python tools/benchmark.py train [--stage 2] [--batch_size 256] [--steps_per_call 1] [--dtype bfloat16]
    python tools/benchmark.py schedule [--ks 1,4,16] [--num_hr 20000]
    python tools/benchmark.py infer [--batch_sizes 1,16,256,1024] [--dtype float32]
    python tools/benchmark.py torch [--batch_size 256] [--dtype bfloat16] [--modes eager,compile]
    python tools/benchmark.py compare [--small] [--out FILE]
    python tools/benchmark.py infer_vs_torch [--batch_size 16]

`train`: ms per step and images/s of a stage's jitted training step on device-resident random
faces over every local device (stage 2: TNet, SNet, DSNet and their three discriminators, DeNet
frozen; stage 1: DeNet and its 16x16 LightCNN), K = `--steps_per_call` steps per call
(`lax.scan` over K staged batches); FLOPs per image from XLA's cost analysis and the implied
utilisation of `--peak_tflops`; for stage 2 also the share of step time spent in the edge priors
(the same step timed with edges=()).
`schedule`: the wall time of the paper's whole schedule on `--num_hr` HR faces (stage 1: 30
epochs at batch 16, stage 2: 40 epochs at batch 4) predicted from step times measured for each
K of `--ks`, the fastest K per stage; compilation is reported beside it, not in it.
`infer`: SNet faces/s (16x16 -> 64x64, all three iterations, last image returned), one entry
per batch size.
`torch`: the PyTorch build of these networks (`--torch_ref`, default bench/torch_ref.py, an
ignored folder of the checkout) run as a subprocess, eager and torch.compile'd: its stage-2
train images/s at the batch and its SNet faces/s at 4x the batch.
`compare`: ours and PyTorch's figures side by side, in one process on one device, with ratios
ours / torch (> 1: ours faster): stage-2 train images/s, SNet faces/s, and the schedule. Its
defaults are the device run, sized for about 8 minutes on one H100 with compilation (a time
budget skips the jobs that would start later; see tools/device_bench.sh); `--small` shrinks it
to a CPU rehearsal of a few minutes.
`infer_vs_torch`: SNet faces/s at one batch size, ours and PyTorch's eager build in one run.

The model subcommands use the paper's full-size networks unless `--small` (the smoke config's),
randomly initialised, on uniform-noise faces: Canny's hysteresis loops a data-dependent number
of times, so trained networks on real faces may take somewhat different time. They need JAX,
Flax, optax, ml-collections and OpenCV only (no TensorFlow, TFDS or grain), and the PyTorch
ones torch besides.

`data`: HR+LR training pairs per second delivered by the input pipeline from the prepared
array_record datasets (the synthetic default unless --hr_dir/--lr_dir are given), once with
the decoded cache and once decoding PNGs from array_record on every step.

Imports nothing heavy at module level (no TensorFlow at all), so that further subcommands
can be added as functions registered in `SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # configs/, fsr_jax/

#: HR training faces of the paper's schedule.
PAPER_NUM_HR = 20_000
#: Per-face shapes of a training batch, (H, W, C) by key.
FACE_SHAPES = {"hr": (64, 64, 3), "lr": (16, 16, 3)}


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


def _ints(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16)."""
    return tuple(int(x) for x in text.split(",") if x)


def _names(text: str) -> tuple[str, ...]:
    """'float32,bfloat16' -> ('float32', 'bfloat16')."""
    return tuple(x for x in text.split(",") if x)


def _model_config(small: bool, dtype: str, projection: str = "dense", edges: str | None = None):
    """The paper's config (the smoke config's networks if `small`) with the benchmark's overrides;
    `edges` is a comma-separated list ('' for none, None for the config's)."""
    from configs import smoke, teacher_student

    config = (smoke if small else teacher_student).get_config()
    config.model.dtype = dtype
    config.model.sr.projection = projection
    if edges is not None:
        config.model.sr.edges = _names(edges)
    return config


def _config_key(config) -> str:
    """The config sections a training step depends on, as JSON: the key of the caches below."""
    return json.dumps({k: config[k].to_dict() for k in ("model", "optimizer", "stage1", "stage2")},
                      sort_keys=True)


def _config_from_key(key: str):
    """The ConfigDict of a `_config_key` (tuples come back as lists)."""
    import ml_collections

    return ml_collections.ConfigDict(json.loads(key))


def _stage_name(stage: int) -> str:
    """1 -> 'degradation', 2 -> 'teacher_student' (fsr_jax.steps' names)."""
    from fsr_jax.steps import STAGE1, STAGE2

    return {1: STAGE1, 2: STAGE2}[stage]


def _mesh(batch_size: int):
    """The data mesh over every device; ValueError unless `batch_size` splits evenly over it."""
    from fsr_jax.mesh import data_mesh

    mesh = data_mesh()
    if batch_size % mesh.devices.size:
        raise ValueError(f"batch size {batch_size} is not a multiple of the {mesh.devices.size} "
                         "devices of the data mesh")
    return mesh


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


def _stacked_sharding(mesh):
    """K stacked batches: the batch axis (axis 1) split over `data`, the step axis whole."""
    from jax.sharding import NamedSharding, PartitionSpec

    from fsr_jax.mesh import DATA_AXIS

    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def _face_batches(steps_per_call: int, batch_size: int, mesh) -> dict:
    """K = `steps_per_call` batches of random faces on the devices: {'hr': (K, B, 64, 64, 3),
    'lr': (K, B, 16, 16, 3)} float32 in [0, 1), a different batch per step."""
    import jax

    keys = jax.random.split(jax.random.key(2), len(FACE_SHAPES))
    faces = {name: jax.random.uniform(key, (steps_per_call, batch_size, *shape))
             for key, (name, shape) in zip(keys, FACE_SHAPES.items())}
    return jax.device_put(faces, _stacked_sharding(mesh))


@functools.lru_cache(maxsize=None)
def _initial_state(stage: int, config_key: str):
    """(Nets, optimizer, initial TrainState replicated over the data mesh) of a stage, built once
    per config; stage 2's frozen DeNet is randomly initialised like the rest."""
    import jax
    import jax.numpy as jnp

    from fsr_jax.mesh import data_mesh, replicated
    from fsr_jax.steps import Nets, init_state, make_optimizer

    config = _config_from_key(config_key)
    nets = Nets.from_config(config.model)
    tx = make_optimizer(config.optimizer, steps_per_epoch=1000)
    stage_cfg, frozen = config.stage1, None
    if stage == 2:
        stage_cfg = config.stage2
        frozen = {"denet": nets.down.init(jax.random.key(1), jnp.zeros((1, *FACE_SHAPES["hr"])))["params"]}
    state = init_state(_stage_name(stage), stage_cfg, nets, tx, 0, 64, 16, frozen)
    return nets, tx, jax.device_put(state, replicated(data_mesh()))


@functools.lru_cache(maxsize=None)
def _train_program(stage: int, config_key: str, batch_size: int, steps_per_call: int):
    """(compiled call (state, K stacked batches) -> (state, metrics) running K =
    `steps_per_call` steps by `scan_steps` as training runs them (unrolled on CPU, a device
    loop elsewhere), state donated; seconds to trace and compile it)."""
    import jax

    from fsr_jax.mesh import replicated
    from fsr_jax.steps import scan_steps, stage_step

    nets, tx, state = _initial_state(stage, config_key)
    mesh = _mesh(batch_size)
    repl = replicated(mesh)
    batches = {name: jax.ShapeDtypeStruct((steps_per_call, batch_size, *shape), "float32",
                                          sharding=_stacked_sharding(mesh))
               for name, shape in FACE_SHAPES.items()}
    step = stage_step(_stage_name(stage), _config_from_key(config_key), nets, tx)
    call = scan_steps(step)
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = jax.jit(call, donate_argnums=0, out_shardings=(repl, repl)).lower(state, batches).compile()
    return compiled, time.perf_counter() - start


def measure_train(config, stage: int, batch_size: int, steps_per_call: int, calls: int,
                  warmup: int) -> dict:
    """A stage's training speed at `batch_size` over every device, K = `steps_per_call` steps
    per jitted call on K staged batches, timed over `calls` calls after `warmup` from a fresh
    copy of the initial state: step_ms (call time / K), call_ms, images_per_s, compile_s
    (trace + compile, once per process for a config, batch size and K)."""
    import jax
    import jax.numpy as jnp

    mesh = _mesh(batch_size)
    key = _config_key(config)
    compiled, compile_s = _train_program(stage, key, batch_size, steps_per_call)
    state = jax.tree.map(jnp.copy, _initial_state(stage, key)[2])
    batches = _face_batches(steps_per_call, batch_size, mesh)

    def advance():
        nonlocal state
        state, metrics = compiled(state, batches)
        return metrics

    seconds = _seconds_per_call(advance, calls, warmup)
    step_s = seconds / steps_per_call
    return {"batch_size": batch_size, "steps_per_call": steps_per_call, "calls": calls,
            "step_ms": round(1000 * step_s, 3), "call_ms": round(1000 * seconds, 2),
            "images_per_s": round(batch_size / step_s, 1), "compile_s": round(compile_s, 2)}


def step_flops(config, stage: int, batch_size: int) -> float | None:
    """XLA's FLOPs of one training step on a whole batch of `batch_size`: the cost analysis of
    the unoptimised HLO lowered for the host CPU, which counts every convolution on any
    accelerator (the GPU's compiled analysis leaves out the cuDNN calls, and a `lax.scan` body
    is counted once whatever K). None where XLA gives no figure."""
    import jax

    from fsr_jax.steps import stage_step

    nets, tx, state = _initial_state(stage, _config_key(config))
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), state)
    batch = {name: jax.ShapeDtypeStruct((batch_size, *shape), "float32", sharding=cpu)
             for name, shape in FACE_SHAPES.items()}
    cost = jax.jit(stage_step(_stage_name(stage), config, nets, tx)).lower(state, batch).cost_analysis()
    return float(cost["flops"]) if cost and "flops" in cost else None


def flops_fields(flops: float | None, batch_size: int, step_ms: float, peak_tflops: float,
                 devices: int) -> dict:
    """gflop_per_image, achieved_tflops (all devices) and, given the per-device
    `peak_tflops`, utilisation (0..1) of a step of `flops` FLOPs taking `step_ms`."""
    if not flops:
        return {}
    achieved = flops / (step_ms / 1000) / 1e12
    out = {"gflop_per_image": round(flops / batch_size / 1e9, 3), "achieved_tflops": round(achieved, 2)}
    if peak_tflops:
        out["utilisation"] = round(achieved / (peak_tflops * devices), 4)
    return out


def _peak_rss_mb() -> int:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def train_benchmark(args: argparse.Namespace) -> dict:
    """The `train` subcommand."""
    import jax

    config = _model_config(args.small, args.dtype, args.projection, args.edges)
    result = {"benchmark": "train", "stage": args.stage, "stage_name": _stage_name(args.stage),
              "dtype": args.dtype, "projection": args.projection, "small": args.small,
              **measure_train(config, args.stage, args.batch_size, args.steps_per_call,
                              args.steps, args.warmup)}
    result.update(flops_fields(step_flops(config, args.stage, args.batch_size), args.batch_size,
                               result["step_ms"], args.peak_tflops, jax.device_count()))
    if args.stage == 2 and args.edge_share:
        config.model.sr.edges = ()
        plain = measure_train(config, 2, args.batch_size, args.steps_per_call, args.steps, args.warmup)
        result["step_ms_without_edges"] = plain["step_ms"]
        result["edge_share"] = round(max(result["step_ms"] - plain["step_ms"], 0.0) / result["step_ms"], 4)
    return {**result, "peak_host_rss_mb": _peak_rss_mb(), **_device_info()}


def paper_schedule() -> list[tuple[int, int, int]]:
    """(stage, batch size, epochs) of the paper's two stages (configs/teacher_student.py)."""
    from configs import teacher_student

    cfg = teacher_student.get_config()
    return [(1, cfg.stage1.batch_size, cfg.stage1.epochs), (2, cfg.stage2.batch_size, cfg.stage2.epochs)]


def schedule_steps(num_hr: int, batch_size: int, epochs: int) -> int:
    """Training steps of a stage: `epochs` passes of num_hr // batch_size full batches (the
    training loop's epoch). 20,000 faces: 37,500 at batch 16 x 30, 200,000 at batch 4 x 40."""
    return epochs * (num_hr // batch_size)


def predict_stage(steps: int, measurements: list[dict]) -> dict:
    """A stage's predicted wall time at its fastest measurement (the one with the least
    step_ms): steps x step_ms, in seconds and minutes, and that measurement's K."""
    best = min(measurements, key=lambda m: m["step_ms"])
    seconds = steps * best["step_ms"] / 1000
    return {"steps": steps, "best_steps_per_call": best["steps_per_call"], "step_ms": best["step_ms"],
            "predicted_s": round(seconds, 1), "predicted_min": round(seconds / 60, 2)}


def measure_schedule(config, num_hr: int, ks: tuple[int, ...], steps: int, warmup: int) -> dict:
    """The paper's schedule on `num_hr` faces predicted from step times measured for each K in
    `ks` (about `steps` steps timed per K, in whole calls), the fastest K per stage. Compile
    seconds are summed beside the prediction, not in it (a program compiled earlier in the
    process counts with its compile time then)."""
    stages = []
    for stage, batch_size, epochs in paper_schedule():
        runs = [measure_train(config, stage, batch_size, k, -(-steps // k), warmup) for k in ks]
        stages.append({"stage": stage, "stage_name": _stage_name(stage), "batch_size": batch_size,
                       "epochs": epochs, "measurements": runs,
                       **predict_stage(schedule_steps(num_hr, batch_size, epochs), runs)})
    total = sum(s["predicted_s"] for s in stages)
    return {"num_hr": num_hr, "stages": stages, "predicted_s": round(total, 1),
            "predicted_min": round(total / 60, 2),
            "compile_s": round(sum(m["compile_s"] for s in stages for m in s["measurements"]), 1)}


def schedule_benchmark(args: argparse.Namespace) -> dict:
    """The `schedule` subcommand."""
    config = _model_config(args.small, args.dtype, args.projection, args.edges)
    return {"benchmark": "schedule", "dtype": args.dtype, "small": args.small,
            **measure_schedule(config, args.num_hr, _ints(args.ks), args.steps, args.warmup),
            **_device_info()}


@functools.lru_cache(maxsize=None)
def _sr_params(config_key: str):
    """(SNet module, its random parameters replicated over the data mesh), once per config."""
    import jax
    import jax.numpy as jnp

    from fsr_jax import models
    from fsr_jax.mesh import data_mesh, replicated

    net = models.build_sr(_config_from_key(config_key).model)
    params = net.init(jax.random.key(1), jnp.zeros((1, *FACE_SHAPES["lr"])))
    return net, jax.device_put(params, replicated(data_mesh()))


def measure_infer(config, batch_size: int, steps: int, warmup: int) -> dict:
    """SNet inference on `batch_size` random 16x16 faces split over every device: batch_ms,
    faces_per_s (64x64 outputs of the last iteration) and compile_s."""
    import jax

    from fsr_jax.mesh import batch_sharding

    mesh = _mesh(batch_size)
    net, params = _sr_params(_config_key(config))
    lr = jax.device_put(jax.random.uniform(jax.random.key(0), (batch_size, *FACE_SHAPES["lr"])),
                        batch_sharding(mesh))
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        apply = jax.jit(lambda p, x: net.apply(p, x)[-1]).lower(params, lr).compile()
    compile_s = time.perf_counter() - start
    seconds = _seconds_per_call(lambda: apply(params, lr), steps, warmup)
    return {"batch_size": batch_size, "batch_ms": round(1000 * seconds, 2),
            "faces_per_s": round(batch_size / seconds, 1), "compile_s": round(compile_s, 2)}


def infer_benchmark(args: argparse.Namespace) -> dict:
    """The `infer` subcommand."""
    config = _model_config(args.small, args.dtype, args.projection, args.edges)
    runs = [measure_infer(config, n, args.steps, args.warmup) for n in _ints(args.batch_sizes)]
    return {"benchmark": "infer", "net": "SNet", "dtype": args.dtype, "projection": args.projection,
            "small": args.small, "runs": runs, **_device_info()}


def torch_ref_path(path: str) -> pathlib.Path:
    """The PyTorch reference script (`path`, relative to the repository root unless absolute);
    FileNotFoundError saying how to get it when it is not there."""
    script = REPO / path
    if not script.is_file():
        raise FileNotFoundError(
            f"the PyTorch reference {script} is missing: copy it into the checkout's ignored "
            "bench/ folder (cp ../shared/bench/torch_ref.py bench/, the project's shared bench "
            "folder beside the checkout) or pass --torch_ref PATH")
    return script


def _torch_device() -> str:
    """'cuda' where JAX runs on a GPU, else 'cpu'. First stops JAX preallocating GPU memory
    (unless XLA_PYTHON_CLIENT_PREALLOCATE says otherwise), so that PyTorch subprocesses on the
    same GPU get theirs: call it before JAX's first computation."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    return "cuda" if jax.default_backend() == "gpu" else "cpu"


def torch_steps(batch: int) -> int:
    """Timed steps of a torch_ref run at `batch`: about 1,280 training images, 5 to 20 steps."""
    return max(5, min(20, 1280 // batch))


def run_torch_ref(script: pathlib.Path, *, device: str, batch: int, steps: int, bf16: bool,
                  compiled: bool, small: bool, timeout_s: float | None = None) -> dict:
    """One torch_ref run as a subprocess: its JSON line (train_images_per_s at `batch`,
    snet_infer_images_per_s at 4 x `batch`, ...) with mode ('eager'/'compile'), step_ms (from
    the rate as printed, to 0.1 images/s) and the run's wall_s. `small`: the smoke config's
    widths (torch_ref's discriminators stay full size)."""
    cmd = [sys.executable, str(script), "--device", device, "--batch", str(batch), "--steps", str(steps)]
    cmd += ["--bf16"] * bf16 + ["--compile"] * compiled
    cmd += ["--nf", "8", "--groups", "1", "--blocks", "1"] if small else []
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON line:\n{proc.stdout[-3000:]}")
    out = json.loads(lines[-1])
    return {**out, "mode": "compile" if compiled else "eager",
            "step_ms": round(1000 * batch / out["train_images_per_s"], 3),
            "wall_s": round(time.perf_counter() - start, 1)}


def torch_benchmark(args: argparse.Namespace) -> dict:
    """The `torch` subcommand."""
    script = torch_ref_path(args.torch_ref)
    device = _torch_device()
    runs = [run_torch_ref(script, device=device, batch=args.batch_size, bf16=args.dtype == "bfloat16",
                          steps=args.steps or torch_steps(args.batch_size),
                          compiled=mode == "compile", small=args.small)
            for mode in _names(args.modes)]
    return {"benchmark": "torch", "batch_size": args.batch_size, "dtype": args.dtype,
            "small": args.small, "torch_ref": str(script), "runs": runs}


def infer_vs_torch(args: argparse.Namespace) -> dict:
    """The `infer_vs_torch` subcommand."""
    if args.batch_size % 4:
        raise ValueError(f"--batch_size {args.batch_size}: torch_ref infers at 4x its batch, "
                         "so it must be a multiple of 4")
    script = torch_ref_path(args.torch_ref)
    device = _torch_device()
    ours = measure_infer(_model_config(args.small, args.dtype), args.batch_size, args.steps, args.warmup)
    theirs = run_torch_ref(script, device=device, batch=args.batch_size // 4, steps=args.steps,
                           bf16=args.dtype == "bfloat16", compiled=False, small=args.small)
    return {"benchmark": "infer_vs_torch", "batch_size": args.batch_size, "dtype": args.dtype,
            "small": args.small, "ours": ours, "torch": theirs,
            "ours_over_torch": round(ours["faces_per_s"] / theirs["snet_infer_images_per_s"], 3),
            **_device_info()}


#: `compare`'s defaults: the device run, sized for about 8 minutes on one H100 with
#: compilation (each stage-2 program compiles in tens of seconds there; torch.compile's runs,
#: the slowest to start, come last and are the first the budget skips).
COMPARE_DEVICE_RUN = dict(
    dtypes=("bfloat16", "float32"), train_batch=256, infer_batch_sizes=(256, 1024), ks=(1, 16),
    train_steps=5, infer_steps=10, schedule_steps=64, warmup=1, torch_compile=True, torch_steps=0,
    budget_s=420.0)
#: `compare --small`: the smoke config's networks and tiny batches, a CPU rehearsal.
COMPARE_SMALL = dict(
    dtypes=("bfloat16", "float32"), train_batch=4, infer_batch_sizes=(4, 16), ks=(1, 4),
    train_steps=2, infer_steps=2, schedule_steps=4, warmup=1, torch_compile=False, torch_steps=1,
    budget_s=900.0)
_LISTS = {"dtypes": _names, "infer_batch_sizes": _ints, "ks": _ints}


def compare_settings(args: argparse.Namespace) -> dict:
    """The preset (`COMPARE_SMALL` with --small, else `COMPARE_DEVICE_RUN`) with every option
    given on the command line in its place."""
    settings = dict(COMPARE_SMALL if args.small else COMPARE_DEVICE_RUN, small=args.small)
    for name in settings:
        value = getattr(args, name)
        if value is not None:
            settings[name] = _LISTS[name](value) if name in _LISTS else value
    if any(n % 4 for n in settings["infer_batch_sizes"]):
        raise ValueError(f"infer batch sizes {settings['infer_batch_sizes']}: torch_ref infers at "
                         "4x its batch, so each must be a multiple of 4")
    return settings


def compare_plan(settings: dict) -> list[tuple]:
    """The jobs of a comparison in the order they run (the time budget cuts the tail): each of
    ours next to the PyTorch runs it is compared with, torch.compile last. A job is ('train',
    dtype), ('infer', dtype), ('schedule',) or ('torch', batch, dtype, 'eager'/'compile');
    torch_ref's run at batch b gives its train figure at b and its inference figure at 4b."""
    s = settings
    jobs = []
    for dtype in s["dtypes"]:
        jobs += [("train", dtype), ("torch", s["train_batch"], dtype, "eager")]
    for dtype in s["dtypes"]:
        jobs += [("infer", dtype)] + [("torch", n // 4, dtype, "eager") for n in s["infer_batch_sizes"]]
    (_, batch1, _), (_, batch2, _) = paper_schedule()
    jobs += [("schedule",), ("torch", batch2, "float32", "eager"), ("torch", batch1, "float32", "eager")]
    if s["torch_compile"]:
        jobs += [("torch", s["train_batch"], dtype, "compile") for dtype in s["dtypes"]]
    return list(dict.fromkeys(jobs))


def _job_key(job: tuple) -> str:
    """('torch', 256, 'bfloat16', 'eager') -> 'torch/256/bfloat16/eager'."""
    return "/".join(map(str, job))


def _run_job(job: tuple, settings: dict, script: pathlib.Path, device: str, deadline: float) -> dict:
    """One job of `compare_plan`; a PyTorch run is killed at `deadline` (perf_counter seconds).
    The schedule runs in float32, the paper's precision."""
    import jax

    s = settings
    if job[0] == "torch":
        _, batch, dtype, mode = job
        return run_torch_ref(script, device=device, batch=batch, steps=s["torch_steps"] or torch_steps(batch),
                             bf16=dtype == "bfloat16", compiled=mode == "compile", small=s["small"],
                             timeout_s=deadline - time.perf_counter())
    if job[0] == "schedule":
        return measure_schedule(_model_config(s["small"], "float32"), PAPER_NUM_HR, s["ks"],
                                s["schedule_steps"], s["warmup"])
    config = _model_config(s["small"], job[1])
    if job[0] == "train":
        out = measure_train(config, 2, s["train_batch"], 1, s["train_steps"], s["warmup"])
        flops = step_flops(config, 2, s["train_batch"])
        return {**out, **flops_fields(flops, s["train_batch"], out["step_ms"], 0.0, jax.device_count())}
    return {"runs": [measure_infer(config, n, s["infer_steps"], s["warmup"]) for n in s["infer_batch_sizes"]]}


def compare_row(figure: str, ours: float | None, torch: dict[str, float | None]) -> dict:
    """A figure of ours beside PyTorch's by mode, with ours / torch for each mode measured."""
    torch = {mode: value for mode, value in torch.items() if value}
    ratios = {mode: round(ours / value, 3) for mode, value in torch.items()} if ours else {}
    return {"figure": figure, "ours": ours, "torch": torch, "ours_over_torch": ratios}


def compare_rows(entries: dict, settings: dict) -> list[dict]:
    """The side-by-side rows of the entries measured so far (by `_job_key`): for each dtype,
    stage-2 train images/s at the train batch and SNet faces/s at each inference batch; then
    float32 stage-2 train images/s at the paper's batch 4 (ours at the schedule's fastest K)."""
    s = settings
    modes = ("eager", "compile") if s["torch_compile"] else ("eager",)

    def torch(batch, dtype, field):
        return {mode: entries.get(f"torch/{batch}/{dtype}/{mode}", {}).get(field) for mode in modes}

    rows = [compare_row(f"stage-2 train images/s, batch {s['train_batch']}, {dtype}",
                        entries.get(f"train/{dtype}", {}).get("images_per_s"),
                        torch(s["train_batch"], dtype, "train_images_per_s"))
            for dtype in s["dtypes"]]
    for dtype in s["dtypes"]:
        ours = {r["batch_size"]: r["faces_per_s"] for r in entries.get(f"infer/{dtype}", {}).get("runs", [])}
        rows += [compare_row(f"SNet faces/s, batch {n}, {dtype}", ours.get(n),
                             torch(n // 4, dtype, "snet_infer_images_per_s"))
                 for n in s["infer_batch_sizes"]]
    stage2 = next((st for st in entries.get("schedule", {}).get("stages", []) if st["stage"] == 2), None)
    batch2 = paper_schedule()[1][1]
    rows.append(compare_row(
        f"stage-2 train images/s, batch {batch2}, float32 (ours: fastest K of the schedule)",
        stage2 and round(batch2 / stage2["step_ms"] * 1000, 1),
        {"eager": entries.get(f"torch/{batch2}/float32/eager", {}).get("train_images_per_s")}))
    return rows


def compare_schedule(entries: dict) -> dict:
    """Our predicted schedule beside PyTorch's, in minutes. PyTorch's stage 2 is the stage's
    steps x torch_ref's eager step at batch 4, with the ratio torch's time / ours (> 1: ours
    faster). torch_ref has no stage 1; its stage-2 step at batch 16 holds all of stage 1's work
    (DSNet is DeNet's network on 64x64 faces, D_DS the 16x16 LightCNN) and much more, so it
    only bounds PyTorch's stage 1 from above: the total with it is a bound, given no ratio."""
    ours = entries.get("schedule", {})
    if "stages" not in ours:
        return {}
    out = {"ours_min": {f"stage{st['stage']}": st["predicted_min"] for st in ours["stages"]},
           "ours_compile_s": ours["compile_s"]}
    out["ours_min"]["total"] = ours["predicted_min"]
    (_, batch1, epochs1), (_, batch2, epochs2) = paper_schedule()
    step4 = entries.get(f"torch/{batch2}/float32/eager", {}).get("step_ms")
    step16 = entries.get(f"torch/{batch1}/float32/eager", {}).get("step_ms")
    if step4:
        torch2 = schedule_steps(ours["num_hr"], batch2, epochs2) * step4 / 60_000
        out.update(torch_stage2_step_ms=step4, torch_stage2_min=round(torch2, 2),
                   stage2_torch_over_ours=round(torch2 / out["ours_min"]["stage2"], 3))
        if step16:
            bound = torch2 + schedule_steps(ours["num_hr"], batch1, epochs1) * step16 / 60_000
            out.update(torch_stage2_step_ms_at_batch16=step16,
                       torch_total_min_upper_bound=round(bound, 2))
    return out


def _write_json(path: str, obj: dict) -> None:
    """`obj` as indented JSON at `path`, replaced whole (a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def compare(args: argparse.Namespace) -> dict:
    """The `compare` subcommand: `compare_plan`'s jobs in order; a job that fails is recorded
    as {'error': ...} and the rest still run; jobs starting past the budget are skipped. The
    report is rewritten to --out after every job, so a run cut off keeps what it measured."""
    settings = compare_settings(args)
    script = torch_ref_path(args.torch_ref)
    device = _torch_device()
    start = time.perf_counter()
    deadline = start + settings["budget_s"]
    head = {"benchmark": "compare", "settings": settings, "torch_device": device,
            "torch_ref": str(script), **_device_info()}
    entries, report = {}, {}
    for job in compare_plan(settings):
        key, job_start = _job_key(job), time.perf_counter()
        if job_start > deadline:
            entries[key] = {"skipped": f"past the {settings['budget_s']:.0f} s budget"}
        else:
            print(f"compare: {key} (at {job_start - start:.0f} s)", file=sys.stderr, flush=True)
            try:
                entries[key] = {**_run_job(job, settings, script, device, deadline),
                                "wall_s": round(time.perf_counter() - job_start, 1)}
            except Exception as e:  # noqa: BLE001 -- one failed figure must not lose the others
                entries[key] = {"error": f"{type(e).__name__}: {e}"[-3000:]}
                print(f"compare: {key} failed: {entries[key]['error']}", file=sys.stderr, flush=True)
        report = {**head, "rows": compare_rows(entries, settings), "schedule": compare_schedule(entries),
                  "entries": entries, "wall_s": round(time.perf_counter() - start, 1)}
        if args.out:
            _write_json(args.out, report)
    return report


def _model_options(p, steps: int, warmup: int, timed: str) -> None:
    p.add_argument("--steps", type=int, default=steps, help=f"timed {timed}")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed calls first")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--projection", choices=("dense", "transpose"), default="dense")
    p.add_argument("--small", action="store_true", help="the smoke config's tiny networks")
    p.add_argument("--edges", help="edge priors, e.g. '' or 'canny' (default: the config's)")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="a stage's training ms/step and images/s")
    _model_options(p, steps=20, warmup=3, timed="calls (of --steps_per_call steps each)")
    p.add_argument("--stage", type=int, choices=(1, 2), default=2,
                   help="1: DeNet + its 16x16 LightCNN; 2: TNet, SNet, DSNet + discriminators")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--steps_per_call", type=int, default=1,
                   help="K: steps per jitted call (lax.scan over K staged batches)")
    p.add_argument("--peak_tflops", type=float, default=0.0,
                   help="one device's peak for --dtype, for the utilisation figure")
    p.add_argument("--no_edge_share", dest="edge_share", action="store_false",
                   help="stage 2: skip the second timing with edges=()")


def _schedule_parser(sub) -> None:
    p = sub.add_parser("schedule", help="predicted wall time of the paper's whole schedule")
    _model_options(p, steps=64, warmup=1, timed="steps per K, rounded up to whole calls")
    p.add_argument("--ks", default="1,4,16", help="steps per call to measure, comma-separated")
    p.add_argument("--num_hr", type=int, default=PAPER_NUM_HR, help="HR training faces")


def _infer_parser(sub) -> None:
    p = sub.add_parser("infer", help="SNet inference faces/s per batch size")
    _model_options(p, steps=20, warmup=3, timed="calls per batch size")
    p.add_argument("--batch_sizes", "--batch_size", default="1,16,256,1024",
                   help="comma-separated; each a multiple of the device count")


def _torch_ref_option(p) -> None:
    p.add_argument("--torch_ref", default="bench/torch_ref.py",
                   help="the PyTorch reference script, relative to the repository root")


def _torch_parser(sub) -> None:
    p = sub.add_parser("torch", help="the PyTorch reference (torch_ref.py) as a subprocess")
    _torch_ref_option(p)
    p.add_argument("--batch_size", type=int, default=256, help="train batch; inference at 4x")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--modes", default="eager,compile", help="'eager', 'compile' or both")
    p.add_argument("--steps", type=int, default=0, help="timed steps (0: about 1,280 images)")
    p.add_argument("--small", action="store_true", help="the smoke config's widths")


def _compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="ours and PyTorch's figures side by side, with ratios")
    _torch_ref_option(p)
    p.add_argument("--small", action="store_true",
                   help="the CPU rehearsal: smoke networks, tiny batches, few steps")
    p.add_argument("--out", help="also write the report here, after every job")
    for name in ("dtypes", "infer_batch_sizes", "ks"):
        p.add_argument(f"--{name}", help="comma-separated (default: the preset's)")
    for name in ("train_batch", "train_steps", "infer_steps", "schedule_steps", "warmup"):
        p.add_argument(f"--{name}", type=int, help="default: the preset's")
    p.add_argument("--torch_steps", type=int, help="timed steps of each PyTorch run "
                   "(0: about 1,280 training images; default: the preset's)")
    p.add_argument("--budget_s", type=float, help="start no job after this many seconds")
    p.add_argument("--torch_compile", action=argparse.BooleanOptionalAction,
                   help="also torch.compile'd PyTorch at the train batch (device run: yes)")


def _infer_vs_torch_parser(sub) -> None:
    p = sub.add_parser("infer_vs_torch", help="SNet faces/s, ours and PyTorch eager, one run")
    _torch_ref_option(p)
    p.add_argument("--batch_size", type=int, default=16, help="a multiple of 4")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--small", action="store_true", help="the smoke config's widths")


SUBCOMMANDS = {
    "data": (_data_parser, data),
    "train": (_train_parser, train_benchmark),
    "schedule": (_schedule_parser, schedule_benchmark),
    "infer": (_infer_parser, infer_benchmark),
    "torch": (_torch_parser, torch_benchmark),
    "compare": (_compare_parser, compare),
    "infer_vs_torch": (_infer_vs_torch_parser, infer_vs_torch),
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
