"""A jax.profiler trace of a stage's training step, and where its time goes.

  python tools/profile_step.py [--stage 2] [--batch_size 4] [--steps_per_call 1] [--calls 3] [--small]
                               [--output runs/profile]

Compiles the stage's jitted training step as training does (the paper's full-size networks
unless --small, random faces; see tools/benchmark.py `train`), runs two untimed calls, then
traces `--calls` calls. Writes OUTPUT/trace (the profiler's files; open them in TensorBoard's
profile plugin or Perfetto) and OUTPUT/step.hlo.txt (the compiled program), and prints one JSON
object: wall ms per step, XLA ops run per step and their summed time over every thread, that
time by op kind, by network and direction (forward or backward, from each op's source metadata:
FeedbackSR is TNet and SNet, LightCNN the discriminators, Downsampler DSNet and DeNet, edge
priors apart; ops of no network are the losses and the optimiser), and the ten longest ops.
"""
from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import sys

from absl import app, flags

if __package__ in (None, ""):   # run as a script: the checkout's root on the path for `tools` and `configs`
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tools import benchmark  # noqa: E402

flags.DEFINE_integer("stage", 2, "Stage number in config.stages (1: degradation, 2: teacher-student).",
                     lower_bound=1, upper_bound=2)
flags.DEFINE_integer("batch_size", 4, "Faces per step over all devices.", lower_bound=1)
flags.DEFINE_integer("steps_per_call", 1, "Steps per jitted call (K).", lower_bound=1)
flags.DEFINE_integer("calls", 3, "Traced calls.", lower_bound=1)
flags.DEFINE_enum("projection", "dense", ("dense", "transpose"), "model.sr.projection.")
flags.DEFINE_bool("small", False, "The smoke config's tiny networks.")
flags.DEFINE_string("output", "runs/profile", "Folder for the trace and the compiled program.")
FLAGS = flags.FLAGS

#: Network classes named in the ops' source metadata (FeedbackSR: TNet and SNet; LightCNN: the
#: discriminators; Downsampler: DSNet and DeNet).
NETWORKS = ("FeedbackSR", "LightCNN", "Downsampler")
TOP = 10

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) \(")


def op_sources(hlo_text: str) -> dict[str, str]:
    """{instruction name: its op_name metadata} of a compiled HLO module's text. A fusion without
    metadata of its own takes the first op_name inside the computation it calls."""
    own, calls, first_inside = {}, {}, {}
    computation = None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        instruction = _INSTRUCTION.match(line)
        if not instruction:
            continue
        name = instruction.group(1)
        op_name, called = _OP_NAME.search(line), _CALLS.search(line)
        if op_name:
            own[name] = op_name.group(1)
            first_inside.setdefault(computation, op_name.group(1))
        if called:
            calls[name] = called.group(1)
    return {name: own.get(name) or first_inside.get(calls.get(name), "") for name in set(own) | set(calls)}


def source_group(op_name: str) -> tuple[str, str]:
    """(network, direction) of an op from its op_name, e.g.
    'jit(unrolled)/transpose(jvp(FeedbackSR))/feedback/up_0/...' -> ('FeedbackSR', 'backward')."""
    direction = "backward" if "transpose(" in op_name else "forward"
    if "edge_prior" in op_name:
        return "edge priors", direction
    for network in NETWORKS:
        if re.search(rf"\b{network}\b", op_name):
            return network, direction
    return "losses and optimiser", direction


def op_events(trace_events: list[dict]) -> list[dict]:
    """The complete events of a Chrome trace that are XLA ops (they name their `hlo_op`)."""
    return [e for e in trace_events if e.get("ph") == "X" and e.get("args", {}).get("hlo_op")]


def op_times(ops: list[dict]) -> dict[str, float]:
    """{XLA op name: summed duration, microseconds} over `op_events`."""
    times: dict[str, float] = collections.Counter()
    for event in ops:
        times[event["args"]["hlo_op"]] += event["dur"]
    return times


def summarise(trace_events: list[dict], sources: dict[str, str], steps: int) -> dict:
    """Where `steps` traced steps spent their XLA op time: per-step ms by op kind, by network and
    direction, and the longest ops with their sources."""
    ops = op_events(trace_events)
    times = op_times(ops)
    total = sum(times.values())
    by_kind: dict[str, float] = collections.Counter()
    by_group: dict[tuple[str, str], float] = collections.Counter()
    for op, us in times.items():
        by_kind[re.sub(r"[.\d]+$", "", op)] += us
        by_group[source_group(sources.get(op, ""))] += us

    def ms(us: float) -> float:
        return round(us / 1000 / steps, 1)

    def share(us: float) -> float:
        return round(us / total, 3) if total else 0.0

    return {
        "ops_per_step": len(ops) // steps,
        "op_ms_per_step": ms(total),
        "by_kind": [{"kind": k, "ms": ms(us), "share": share(us)} for k, us in by_kind.most_common(TOP)],
        "by_network": [{"network": n, "direction": d, "ms": ms(us), "share": share(us)}
                       for (n, d), us in sorted(by_group.items(), key=lambda item: -item[1])],
        "top_ops": [{"op": op, "ms": ms(us), "share": share(us), "source": sources.get(op, "")}
                    for op, us in collections.Counter(times).most_common(TOP)],
    }


def read_trace(trace_dir: pathlib.Path) -> list[dict]:
    """The events of the newest Chrome trace (*.trace.json.gz) the profiler wrote under `trace_dir`."""
    files = sorted(trace_dir.glob("plugins/profile/*/*.trace.json.gz"))
    if not files:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}/plugins/profile")
    with gzip.open(files[-1]) as f:
        return json.load(f)["traceEvents"]


def profile(stage_number: int, batch_size: int, steps_per_call: int, calls: int, projection: str, small: bool,
            output: pathlib.Path) -> dict:
    import jax  # noqa: PLC0415

    from fsr_jax import benchmarking  # noqa: PLC0415

    config = benchmark.model_config(small, "float32", projection)
    stage = benchmark.stage_by_number(config, stage_number)
    compiled, compile_s, state, batches = benchmarking.train_run(config, stage, batch_size, steps_per_call)

    def advance():
        nonlocal state
        state, metrics = compiled(state, batches)
        return metrics

    for _ in range(2):
        jax.block_until_ready(advance())
    hlo_text = compiled.as_text()
    output.mkdir(parents=True, exist_ok=True)
    (output / "step.hlo.txt").write_text(hlo_text)
    with jax.profiler.trace(str(output / "trace")):
        seconds = benchmarking.seconds_per_call(advance, calls, warmup=0) * calls
    steps = calls * steps_per_call
    return {"stage": stage.name, "batch_size": batch_size, "steps_per_call": steps_per_call, "small": small,
            "projection": projection, "traced_steps": steps, "compile_s": round(compile_s, 1),
            "step_ms": round(1000 * seconds / steps, 1),
            **summarise(read_trace(output / "trace"), op_sources(hlo_text), steps),
            "output": str(output), **benchmarking.device_info()}


def main(argv):
    del argv
    print(json.dumps(profile(FLAGS.stage, FLAGS.batch_size, FLAGS.steps_per_call, FLAGS.calls, FLAGS.projection,
                             FLAGS.small, pathlib.Path(FLAGS.output)), indent=1))


if __name__ == "__main__":
    app.run(main)
