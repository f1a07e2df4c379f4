"""tools/profile_step.py: its summary of a trace against a hand count, and one real trace of the
smoke networks' stage-2 step whose summary adds up to the op events the profiler wrote."""
import json
import pathlib
import subprocess
import sys

import pytest

from tools import profile_step

REPO = pathlib.Path(__file__).resolve().parents[1]

HLO = """\
HloModule jit_unrolled, entry_computation_layout={()}

%fused_computation.7 (param_0: f32[4]) -> f32[4] {
  %param_0 = f32[4]{0} parameter(0)
  ROOT %add.1 = f32[4]{0} add(%param_0, %param_0), metadata={op_name="jit(unrolled)/transpose(jvp(Downsampler))/block_3/add"}
}

ENTRY %main.9 (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %concatenate.2 = f32[8]{0} concatenate(%p, %p), dimensions={0}, metadata={op_name="jit(unrolled)/jvp(FeedbackSR)/feedback/concatenate" stack_frame_id=3}
  %loop_fusion.7 = f32[4]{0} fusion(%p), kind=kLoop, calls=%fused_computation.7
  %ynn_fusion.4 = f32[4]{0} fusion(%p), kind=kCustom, calls=%fused_computation.7, metadata={op_name="jit(unrolled)/FeedbackSR.edge_prior/while/body"}
  ROOT %add.3 = f32[4]{0} add(%p, %p), metadata={op_name="jit(unrolled)/mul"}
}
"""


def event(op: str, microseconds: float) -> dict:
    return {"ph": "X", "pid": 1, "tid": 2, "ts": 0, "dur": microseconds, "name": op,
            "args": {"hlo_op": op, "hlo_module": "jit_unrolled"}}


def test_sources_come_from_the_op_or_the_computation_a_fusion_calls():
    sources = profile_step.op_sources(HLO)
    assert sources["concatenate.2"] == "jit(unrolled)/jvp(FeedbackSR)/feedback/concatenate"
    assert sources["loop_fusion.7"] == "jit(unrolled)/transpose(jvp(Downsampler))/block_3/add"
    assert sources["ynn_fusion.4"] == "jit(unrolled)/FeedbackSR.edge_prior/while/body"
    assert sources["add.3"] == "jit(unrolled)/mul"


def test_ops_are_grouped_by_network_and_direction():
    assert profile_step.source_group("jit(unrolled)/jvp(FeedbackSR)/feedback/up_0/x") == ("FeedbackSR", "forward")
    assert profile_step.source_group("jit(unrolled)/transpose(jvp(LightCNN))/MFM_0/y") == ("LightCNN", "backward")
    assert profile_step.source_group("jit(unrolled)/FeedbackSR.edge_prior/while") == ("edge priors", "forward")
    assert profile_step.source_group("jit(unrolled)/mul") == ("losses and optimiser", "forward")


def test_the_summary_by_hand():
    # two steps: concatenate 3 + 1 ms, the fusion 2 ms, the edge fusion 1 ms, the add 2 ms; one
    # Python event, which is no XLA op
    events = [event("concatenate.2", 3000), event("concatenate.2", 1000), event("loop_fusion.7", 2000),
              event("ynn_fusion.4", 1000), event("add.3", 2000), {"ph": "X", "name": "$api.py block", "dur": 9e6}]
    summary = profile_step.summarise(events, profile_step.op_sources(HLO), steps=2)
    assert summary["ops_per_step"] == 2 and summary["op_ms_per_step"] == 4.5
    assert summary["by_kind"][0] == {"kind": "concatenate", "ms": 2.0, "share": round(4 / 9, 3)}
    assert {k["kind"] for k in summary["by_kind"]} == {"concatenate", "loop_fusion", "ynn_fusion", "add"}
    groups = {(g["network"], g["direction"]): g["ms"] for g in summary["by_network"]}
    assert groups == {("FeedbackSR", "forward"): 2.0, ("Downsampler", "backward"): 1.0,
                      ("losses and optimiser", "forward"): 1.0, ("edge priors", "forward"): 0.5}
    assert summary["top_ops"][0]["op"] == "concatenate.2"
    assert summary["top_ops"][0]["source"].endswith("feedback/concatenate")


@pytest.mark.slow
def test_a_real_trace_of_the_smoke_step_adds_up(tmp_path, subprocess_env):
    result = subprocess.run([sys.executable, "tools/profile_step.py", "--small", "--calls", "1",
                             "--output", str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                            env=subprocess_env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    events = profile_step.read_trace(tmp_path / "trace")
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    assert summary["ops_per_step"] == len(ops) > 100
    assert summary["op_ms_per_step"] == pytest.approx(sum(e["dur"] for e in ops) / 1000, abs=0.1)
    networks = {g["network"] for g in summary["by_network"]}
    assert {"FeedbackSR", "LightCNN", "Downsampler", "edge priors"} <= networks
    assert sum(g["share"] for g in summary["by_network"]) == pytest.approx(1, abs=0.01)
    assert (tmp_path / "step.hlo.txt").read_text().startswith("HloModule")
