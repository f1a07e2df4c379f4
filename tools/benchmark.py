"""Benchmarks of fsr_jax; each subcommand prints one JSON object.

    python tools/benchmark.py data [--batch_size 256] [--steps 200] [--config.data.hr_dir=D --config.data.lr_dir=D]
    python tools/benchmark.py train [--stage 2] [--batch_size 256] [--steps_per_call 1] [--dtype bfloat16]
    python tools/benchmark.py schedule [--ks 1,4,16] [--num_hr 20000]
    python tools/benchmark.py infer [--batch_sizes 1,16,256,1024] [--dtype float32]
    python tools/benchmark.py torch [--batch_size 256] [--dtype bfloat16] [--modes eager,compile]
    python tools/benchmark.py compare [--small] [--output FILE]
    python tools/benchmark.py infer_vs_torch [--batch_size 16]

The subcommand comes first; `python tools/benchmark.py SUBCOMMAND --help` lists its flags
(absl flags: booleans as --flag / --noflag, lists comma-separated).

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
array_record datasets of a config's `data` section (`--config`, default the paper's, with the
main job's `--config.data.<field>=...` overrides: the synthetic default unless
--config.data.hr_dir/--config.data.lr_dir are given), once with the decoded cache and once
decoding PNGs from array_record on every step.

Imports nothing heavy at module level (no TensorFlow at all), so that further subcommands
can be added as functions registered in `SUBCOMMANDS`.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

from absl import app, flags

from fsr_jax import cli

# The checkout this script belongs to: the PyTorch reference is looked for in its bench/ folder.
REPO = pathlib.Path(__file__).resolve().parents[1]

#: HR training faces of the paper's schedule.
PAPER_NUM_HR = 20_000


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


def data(args: flags.FlagValues) -> dict:
    """The `data` subcommand."""
    cfg = args.config.data
    cfg.progress = False
    runs = []
    modes = [(True, 0), (False, 0)] + ([(False, args.worker_count)] if args.worker_count else [])
    for cache, workers in modes:
        cfg.cache_decoded, cfg.worker_count = cache, workers
        cfg.read_threads = args.read_threads
        runs.append(_time_pipeline(cfg, args.batch_size, args.steps, args.warmup))
    return {
        "benchmark": "data",
        "source": "synthetic default" if cfg.hr_dir is None else f"{cfg.hr_dir} + {cfg.lr_dir}",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "runs": runs,
        "pairs_per_s": max(r["pairs_per_s"] for r in runs),
    }


def _data_flags(fv: flags.FlagValues, argv) -> None:
    cli.define_config(fv, argv, help_string="Config whose `data` section is read (configs/*.py; default: "
                      "the paper's); --config.data.<field>=value overrides a field (hr_dir, lr_dir, tfds_dir, "
                      "...), as for python -m fsr_jax.main.")
    flags.DEFINE_integer("batch_size", 256, "Pairs per batch.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("steps", 100, "Timed batches.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("warmup", 5, "Untimed batches first.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("read_threads", 2, "Array_record read threads.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("worker_count", 2, "Grain worker processes of the third (uncached) run (0: no "
                         "third run).", lower_bound=0, flag_values=fv)


def _ints(values) -> tuple[int, ...]:
    """['1', '4', '16'] or '1,4,16' -> (1, 4, 16)."""
    return tuple(int(x) for x in _names(values))


def _names(values) -> tuple[str, ...]:
    """['float32', 'bfloat16'] or 'float32,bfloat16' -> ('float32', 'bfloat16')."""
    return tuple(x for x in (values.split(",") if isinstance(values, str) else values) if x)


def model_config(small: bool, dtype: str, projection: str = "dense", edges=None):
    """The paper's config (the smoke config's networks if `small`) with the benchmark's overrides;
    `edges` is a list of edge priors ([] for none, None for the config's)."""
    from configs import smoke, teacher_student

    config = (smoke if small else teacher_student).get_config()
    config.model.dtype = dtype
    config.model.sr.projection = projection
    if edges is not None:
        config.model.sr.edges = _names(edges)
    return config


def stage_by_number(config, number: int):
    """Stage `number` (1-based) of `config.stages`: 1 is DeNet's degradation stage, 2 the teacher-student one."""
    from fsr_jax import stages

    return stages.get(config.stages[number - 1])


def paper_batches() -> tuple[int, ...]:
    """The batch size of each of the paper's stages (configs/teacher_student.py): (16, 4)."""
    from configs import teacher_student

    paper = teacher_student.get_config()
    return tuple(paper[name].batch_size for name in paper.stages)


def paper_steps(num_hr: int) -> tuple[int, ...]:
    """Each of the paper's stages' steps on `num_hr` HR faces, as training counts them
    (`stages.total_steps`): 20,000 faces give (37,500, 200,000)."""
    from configs import teacher_student
    from fsr_jax import stages

    paper = teacher_student.get_config()
    return tuple(stages.total_steps(paper, stages.get(name), num_hr) for name in paper.stages)


def train_benchmark(args: flags.FlagValues) -> dict:
    """The `train` subcommand."""
    import jax

    from fsr_jax import benchmarking, cost

    config = model_config(args.small, args.dtype, args.projection, args.edges)
    stage = stage_by_number(config, args.stage)
    result = {"benchmark": "train", "stage": args.stage, "stage_name": stage.name,
              "dtype": args.dtype, "projection": args.projection, "small": args.small,
              **benchmarking.measure_train(config, stage, args.batch_size, args.steps_per_call,
                                           args.steps, args.warmup)}
    result.update(benchmarking.flops_fields(cost.step_flops(stage, config, args.batch_size), args.batch_size,
                                            result["step_ms"], args.peak_tflops, jax.device_count()))
    if args.stage == 2 and args.edge_share:
        config.model.sr.edges = ()
        plain = benchmarking.measure_train(config, stage, args.batch_size, args.steps_per_call, args.steps,
                                           args.warmup)
        result["step_ms_without_edges"] = plain["step_ms"]
        result["edge_share"] = round(max(result["step_ms"] - plain["step_ms"], 0.0) / result["step_ms"], 4)
    return {**result, "peak_host_rss_mb": benchmarking.peak_rss_mb(), **benchmarking.device_info()}


def schedule_benchmark(args: flags.FlagValues) -> dict:
    """The `schedule` subcommand: the paper's schedule (configs/teacher_student.py) with the chosen networks."""
    from configs import teacher_student
    from fsr_jax import benchmarking

    config = model_config(args.small, args.dtype, args.projection, args.edges)
    return {"benchmark": "schedule", "dtype": args.dtype, "small": args.small,
            **benchmarking.measure_schedule(config, teacher_student.get_config(), args.num_hr, _ints(args.ks),
                                            args.steps, args.warmup),
            **benchmarking.device_info()}


def infer_benchmark(args: flags.FlagValues) -> dict:
    """The `infer` subcommand."""
    from fsr_jax import benchmarking

    config = model_config(args.small, args.dtype, args.projection, args.edges)
    runs = [benchmarking.measure_infer(config, n, args.steps, args.warmup) for n in _ints(args.batch_sizes)]
    return {"benchmark": "infer", "net": "SNet", "dtype": args.dtype, "projection": args.projection,
            "small": args.small, "runs": runs, **benchmarking.device_info()}


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


def torch_benchmark(args: flags.FlagValues) -> dict:
    """The `torch` subcommand."""
    script = torch_ref_path(args.torch_ref)
    device = _torch_device()
    runs = [run_torch_ref(script, device=device, batch=args.batch_size, bf16=args.dtype == "bfloat16",
                          steps=args.steps or torch_steps(args.batch_size),
                          compiled=mode == "compile", small=args.small)
            for mode in _names(args.modes)]
    return {"benchmark": "torch", "batch_size": args.batch_size, "dtype": args.dtype,
            "small": args.small, "torch_ref": str(script), "runs": runs}


def infer_vs_torch(args: flags.FlagValues) -> dict:
    """The `infer_vs_torch` subcommand."""
    if args.batch_size % 4:
        raise ValueError(f"--batch_size {args.batch_size}: torch_ref infers at 4x its batch, "
                         "so it must be a multiple of 4")
    script = torch_ref_path(args.torch_ref)
    device = _torch_device()
    from fsr_jax import benchmarking

    ours = benchmarking.measure_infer(model_config(args.small, args.dtype), args.batch_size, args.steps, args.warmup)
    theirs = run_torch_ref(script, device=device, batch=args.batch_size // 4, steps=args.steps,
                           bf16=args.dtype == "bfloat16", compiled=False, small=args.small)
    return {"benchmark": "infer_vs_torch", "batch_size": args.batch_size, "dtype": args.dtype,
            "small": args.small, "ours": ours, "torch": theirs,
            "ours_over_torch": round(ours["faces_per_s"] / theirs["snet_infer_images_per_s"], 3),
            **benchmarking.device_info()}


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


def compare_settings(args: flags.FlagValues) -> dict:
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
    batch1, batch2 = paper_batches()
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

    from configs import teacher_student
    from fsr_jax import benchmarking, cost

    s = settings
    if job[0] == "torch":
        _, batch, dtype, mode = job
        return run_torch_ref(script, device=device, batch=batch, steps=s["torch_steps"] or torch_steps(batch),
                             bf16=dtype == "bfloat16", compiled=mode == "compile", small=s["small"],
                             timeout_s=deadline - time.perf_counter())
    if job[0] == "schedule":
        return benchmarking.measure_schedule(model_config(s["small"], "float32"), teacher_student.get_config(),
                                             PAPER_NUM_HR, s["ks"], s["schedule_steps"], s["warmup"])
    config = model_config(s["small"], job[1])
    if job[0] == "train":
        stage = stage_by_number(config, 2)
        out = benchmarking.measure_train(config, stage, s["train_batch"], 1, s["train_steps"], s["warmup"])
        flops = cost.step_flops(stage, config, s["train_batch"])
        return {**out, **benchmarking.flops_fields(flops, s["train_batch"], out["step_ms"], 0.0, jax.device_count())}
    return {"runs": [benchmarking.measure_infer(config, n, s["infer_steps"], s["warmup"])
                     for n in s["infer_batch_sizes"]]}


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
    batch2 = paper_batches()[1]
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
    batch1, batch2 = paper_batches()
    steps1, steps2 = paper_steps(ours["num_hr"])
    step4 = entries.get(f"torch/{batch2}/float32/eager", {}).get("step_ms")
    step16 = entries.get(f"torch/{batch1}/float32/eager", {}).get("step_ms")
    if step4:
        torch2 = steps2 * step4 / 60_000
        out.update(torch_stage2_step_ms=step4, torch_stage2_min=round(torch2, 2),
                   stage2_torch_over_ours=round(torch2 / out["ours_min"]["stage2"], 3))
        if step16:
            bound = torch2 + steps1 * step16 / 60_000
            out.update(torch_stage2_step_ms_at_batch16=step16,
                       torch_total_min_upper_bound=round(bound, 2))
    return out


def _write_json(path: str, obj: dict) -> None:
    """`obj` as indented JSON at `path`, replaced whole (`files.write_text`: a reader never sees half a file)."""
    from fsr_jax import files

    files.write_text(path, json.dumps(obj, indent=1))


def compare(args: flags.FlagValues) -> dict:
    """The `compare` subcommand: `compare_plan`'s jobs in order; a job that fails is recorded
    as {'error': ...} and the rest still run; jobs starting past the budget are skipped. The
    report is rewritten to --output after every job, so a run cut off keeps what it measured."""
    from fsr_jax import benchmarking

    settings = compare_settings(args)
    script = torch_ref_path(args.torch_ref)
    device = _torch_device()
    start = time.perf_counter()
    deadline = start + settings["budget_s"]
    head = {"benchmark": "compare", "settings": settings, "torch_device": device,
            "torch_ref": str(script), **benchmarking.device_info()}
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
        if args.output:
            _write_json(args.output, report)
    return report


def _model_flags(fv: flags.FlagValues, steps: int, warmup: int, timed: str) -> None:
    flags.DEFINE_integer("steps", steps, f"Timed {timed}.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("warmup", warmup, "Untimed calls first.", lower_bound=0, flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"), "Compute dtype (model.dtype).",
                      flag_values=fv)
    flags.DEFINE_enum("projection", "dense", ("dense", "transpose"), "model.sr.projection.", flag_values=fv)
    flags.DEFINE_bool("small", False, "The smoke config's tiny networks.", flag_values=fv)
    flags.DEFINE_list("edges", None, "Edge priors, comma-separated, e.g. canny,dog; --edges= for none "
                      "(default: the config's).", flag_values=fv)


def _train_flags(fv: flags.FlagValues, argv) -> None:
    _model_flags(fv, steps=20, warmup=3, timed="calls (of --steps_per_call steps each)")
    flags.DEFINE_integer("stage", 2, "1: DeNet + its 16x16 LightCNN; 2: TNet, SNet, DSNet + discriminators.",
                         lower_bound=1, upper_bound=2, flag_values=fv)
    flags.DEFINE_integer("batch_size", 256, "Global batch, over every local device.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("steps_per_call", 1, "K: steps per jitted call (lax.scan over K staged batches).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("peak_tflops", 0.0, "One device's peak for --dtype, for the utilisation figure.",
                       flag_values=fv)
    flags.DEFINE_bool("edge_share", True, "Stage 2: also time the step with edges=() for the edge priors' "
                      "share (--noedge_share skips it).", flag_values=fv)


def _schedule_flags(fv: flags.FlagValues, argv) -> None:
    _model_flags(fv, steps=64, warmup=1, timed="steps per K, rounded up to whole calls")
    flags.DEFINE_list("ks", ["1", "4", "16"], "Steps per call to measure, comma-separated.", flag_values=fv)
    flags.DEFINE_integer("num_hr", PAPER_NUM_HR, "HR training faces.", lower_bound=1, flag_values=fv)


def _infer_flags(fv: flags.FlagValues, argv) -> None:
    _model_flags(fv, steps=20, warmup=3, timed="calls per batch size")
    flags.DEFINE_list("batch_sizes", ["1", "16", "256", "1024"],
                      "Batch sizes, comma-separated; each a multiple of the device count.", flag_values=fv)


def _torch_ref_flag(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("torch_ref", "bench/torch_ref.py",
                        "The PyTorch reference script, relative to the repository root.", flag_values=fv)


def _torch_flags(fv: flags.FlagValues, argv) -> None:
    _torch_ref_flag(fv)
    flags.DEFINE_integer("batch_size", 256, "Train batch; inference at 4x.", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"), "Compute dtype.", flag_values=fv)
    flags.DEFINE_list("modes", ["eager", "compile"], "eager, compile or both.", flag_values=fv)
    flags.DEFINE_integer("steps", 0, "Timed steps (0: about 1,280 images).", lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("small", False, "The smoke config's widths.", flag_values=fv)


def _compare_flags(fv: flags.FlagValues, argv) -> None:
    _torch_ref_flag(fv)
    flags.DEFINE_bool("small", False, "The CPU rehearsal: smoke networks, tiny batches, few steps.",
                      flag_values=fv)
    flags.DEFINE_string("output", None, "Also write the report here, after every job.", flag_values=fv)
    for name in ("dtypes", "infer_batch_sizes", "ks"):
        flags.DEFINE_list(name, None, "Comma-separated (default: the preset's).", flag_values=fv)
    for name in ("train_batch", "train_steps", "infer_steps", "schedule_steps", "warmup"):
        flags.DEFINE_integer(name, None, "Default: the preset's.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("torch_steps", None, "Timed steps of each PyTorch run (0: about 1,280 training "
                         "images; default: the preset's).", lower_bound=0, flag_values=fv)
    flags.DEFINE_float("budget_s", None, "Start no job after this many seconds (default: the preset's).",
                       flag_values=fv)
    flags.DEFINE_bool("torch_compile", None, "Also torch.compile'd PyTorch at the train batch (default: the "
                      "preset's; the device run: yes).", flag_values=fv)


def _infer_vs_torch_flags(fv: flags.FlagValues, argv) -> None:
    _torch_ref_flag(fv)
    flags.DEFINE_integer("batch_size", 16, "SNet batch, a multiple of 4.", lower_bound=4, flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"), "Compute dtype.", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "Timed calls.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("warmup", 1, "Untimed calls first.", lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("small", False, "The smoke config's widths.", flag_values=fv)


#: subcommand: (defines its flags, runs it).
SUBCOMMANDS = {
    "data": (_data_flags, data),
    "train": (_train_flags, train_benchmark),
    "schedule": (_schedule_flags, schedule_benchmark),
    "infer": (_infer_flags, infer_benchmark),
    "torch": (_torch_flags, torch_benchmark),
    "compare": (_compare_flags, compare),
    "infer_vs_torch": (_infer_vs_torch_flags, infer_vs_torch),
}


HELP_FLAGS = ("--help", "--helpshort", "--helpfull", "--helpxml", "-?")


def define(fv: flags.FlagValues, argv) -> None:
    """The flags of the subcommand named first (none for the help alone)."""
    command = cli.subcommand(argv, SUBCOMMANDS)
    if command is not None:
        SUBCOMMANDS[command][0](fv, argv)
    elif not set(argv) <= set(HELP_FLAGS):
        raise cli.FlagsError(f"the subcommand comes first, one of {', '.join(SUBCOMMANDS)}; got {list(argv)}")


def run(args: flags.FlagValues, positional: list[str]) -> int:
    if not positional or positional[0] not in SUBCOMMANDS:
        raise app.UsageError(f"expected a subcommand first, one of {', '.join(SUBCOMMANDS)}; got {positional}")
    if len(positional) > 1:
        raise app.UsageError(f"unexpected arguments: {positional[1:]} (every setting is a --flag)")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
        result = SUBCOMMANDS[positional[0]][1](args)
    print(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv, positional=True,
                   config=lambda args: cli.PAPER_CONFIG if cli.subcommand(args, SUBCOMMANDS) == "data" else None)


if __name__ == "__main__":
    main()
