"""tools/benchmark.py's model subcommands on the smoke networks, in-process and quick.

Shapes are shared between tests so that each program compiles once per session (the
benchmark caches them): stage 1 at batch 16 (K = 2 and 1), stage 2 at batch 4 (K = 1), SNet at
batches 4 and 8. Batches are multiples of the 4 forced CPU devices. PyTorch is a stand-in script that answers like torch_ref.py, so that the plumbing
(flags, parsing, ratios) is checked without torch's minutes on a CPU.
"""
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from fsr_jax import benchmarking
from tools import benchmark

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]

SMALL = ["--small", "--warmup", "0"]

FAKE_TORCH_REF = textwrap.dedent("""\
    import argparse, json
    p = argparse.ArgumentParser()
    p.add_argument("--device"); p.add_argument("--batch", type=int); p.add_argument("--steps", type=int)
    p.add_argument("--compile", action="store_true"); p.add_argument("--bf16", action="store_true")
    p.add_argument("--nf", type=int, default=64); p.add_argument("--groups", type=int, default=6)
    p.add_argument("--blocks", type=int, default=16)
    a = p.parse_args()
    print("a warning line before the JSON")
    print(json.dumps({"device": a.device, "batch": a.batch, "steps": a.steps, "compile": a.compile,
                      "bf16": a.bf16, "nf": a.nf, "groups": a.groups, "blocks": a.blocks,
                      "train_images_per_s": 2.0 * a.batch, "snet_infer_images_per_s": 8.0 * a.batch}))
""")


def run(capsys, *argv) -> dict:
    assert benchmark.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def fake_torch_ref(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "torch_ref.py"
    path.write_text(FAKE_TORCH_REF)
    return str(path)


def test_train_stage1_runs_k_steps_per_call(capsys):
    out = run(capsys, "train", *SMALL, "--stage", "1", "--batch_size", "16", "--steps_per_call", "2",
              "--steps", "1")
    assert (out["stage"], out["stage_name"], out["steps_per_call"], out["calls"]) == (1, "degradation", 2, 1)
    assert out["step_ms"] == pytest.approx(out["call_ms"] / 2, abs=0.01)
    assert out["images_per_s"] == pytest.approx(16 / (out["step_ms"] / 1000), rel=1e-3)
    assert out["gflop_per_image"] > 0 and out["compile_s"] > 0
    assert "edge_share" not in out


def test_train_stage2(capsys):
    out = run(capsys, "train", *SMALL, "--batch_size", "4", "--steps", "1", "--noedge_share")
    assert (out["stage_name"], out["batch_size"], out["steps_per_call"]) == ("teacher_student", 4, 1)
    assert out["step_ms"] == pytest.approx(out["call_ms"], abs=0.01)
    assert out["gflop_per_image"] > 0


def test_flops_fields():
    fields = benchmarking.flops_fields(2e12, batch_size=4, step_ms=500.0, peak_tflops=2.0, devices=2)
    assert fields == {"gflop_per_image": 500.0, "achieved_tflops": 4.0, "utilisation": 1.0}


def test_schedule_predicts_steps_times_the_measured_step(capsys):
    out = run(capsys, "schedule", *SMALL, "--ks", "1", "--steps", "2")
    stage1, stage2 = out["stages"]
    assert (stage1["steps"], stage2["steps"]) == (37_500, 200_000)
    assert (stage1["batch_size"], stage2["batch_size"]) == (16, 4)
    for stage in out["stages"]:
        (measured,) = stage["measurements"]
        assert (measured["steps_per_call"], measured["calls"]) == (1, 2)
        assert stage["step_ms"] == measured["step_ms"]
        assert stage["predicted_s"] == round(stage["steps"] * stage["step_ms"] / 1000, 1)
        assert stage["predicted_min"] == round(stage["steps"] * stage["step_ms"] / 1000 / 60, 2)
    assert out["predicted_s"] == round(stage1["predicted_s"] + stage2["predicted_s"], 1)
    assert out["compile_s"] == pytest.approx(
        sum(m["compile_s"] for s in out["stages"] for m in s["measurements"]), abs=0.1)


def test_predict_stage_takes_the_fastest_k():
    runs = [{"steps_per_call": 1, "step_ms": 12.0}, {"steps_per_call": 16, "step_ms": 3.0},
            {"steps_per_call": 4, "step_ms": 5.0}]
    assert benchmarking.predict_stage(200_000, runs) == {
        "steps": 200_000, "best_steps_per_call": 16, "step_ms": 3.0, "predicted_s": 600.0,
        "predicted_min": 10.0}


def test_schedule_steps_of_the_paper():
    assert benchmark.paper_batches() == (16, 4)
    assert benchmark.paper_steps(20_000) == (37_500, 200_000)


def test_infer_one_entry_per_batch_size(capsys):
    out = run(capsys, "infer", *SMALL, "--batch_sizes", "4,8", "--steps", "1")
    assert [r["batch_size"] for r in out["runs"]] == [4, 8]
    for r in out["runs"]:
        assert r["faces_per_s"] == pytest.approx(r["batch_size"] / (r["batch_ms"] / 1000), rel=1e-2)


def test_torch_passes_the_settings_and_parses_the_json_line(capsys, fake_torch_ref):
    out = run(capsys, "torch", "--small", "--batch_size", "4", "--dtype", "bfloat16",
              "--torch_ref", fake_torch_ref)
    eager, compiled = out["runs"]
    assert (eager["mode"], eager["compile"], compiled["mode"], compiled["compile"]) == (
        "eager", False, "compile", True)
    assert (eager["device"], eager["batch"], eager["bf16"], eager["steps"]) == ("cpu", 4, True, 20)
    assert (eager["nf"], eager["groups"], eager["blocks"]) == (8, 1, 1)
    assert eager["step_ms"] == 500.0  # 4 images at 8 images/s


def test_missing_torch_ref_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere" / "torch_ref.py"
    with pytest.raises(FileNotFoundError, match=r"nowhere/torch_ref\.py.*bench/"):
        benchmark.main(["torch", "--torch_ref", str(missing)])


def test_compare_plan_pairs_each_figure_with_its_torch_runs():
    settings = dict(benchmark.COMPARE_DEVICE_RUN, small=False)
    plan = benchmark.compare_plan(settings)
    assert plan[:2] == [("train", "bfloat16"), ("torch", 256, "bfloat16", "eager")]
    assert ("torch", 64, "float32", "eager") in plan  # SNet at batch 256
    assert plan.count(("torch", 256, "float32", "eager")) == 1  # train 256 and SNet 1024
    assert plan[-2:] == [("torch", 256, "bfloat16", "compile"), ("torch", 256, "float32", "compile")]


def test_compare_reports_ratios_and_the_schedule(capsys, fake_torch_ref, tmp_path):
    out_file = tmp_path / "compare.json"
    out = run(capsys, "compare", "--small", "--dtypes", "float32", "--ks", "1", "--infer_batch_sizes", "4",
              "--train_steps", "1", "--infer_steps", "1", "--schedule_steps", "1", "--warmup", "0",
              "--torch_ref", fake_torch_ref, "--output", str(out_file))
    assert json.loads(out_file.read_text()) == out
    assert not [k for k, e in out["entries"].items() if "error" in e or "skipped" in e]
    train, infer, batch4 = out["rows"]
    assert train["figure"] == "stage-2 train images/s, batch 4, float32"
    assert train["ours"] == out["entries"]["train/float32"]["images_per_s"]
    assert train["ours_over_torch"] == {"eager": round(train["ours"] / 8.0, 3)}  # torch_ref --batch 4
    assert infer["torch"] == {"eager": 8.0}  # torch_ref --batch 1 infers 4 faces
    stage2 = out["entries"]["schedule"]["stages"][1]
    assert batch4["ours"] == round(4 / stage2["step_ms"] * 1000, 1)
    schedule = out["schedule"]
    assert schedule["torch_stage2_min"] == round(200_000 * 500.0 / 60_000, 2)  # 500 ms a step
    assert schedule["stage2_torch_over_ours"] == round(
        200_000 * 500.0 / 60_000 / schedule["ours_min"]["stage2"], 3)
    assert schedule["torch_total_min_upper_bound"] == round((200_000 + 37_500) * 500.0 / 60_000, 2)
    assert schedule["ours_min"]["total"] == out["entries"]["schedule"]["predicted_min"]


def test_infer_vs_torch(capsys, fake_torch_ref):
    out = run(capsys, "infer_vs_torch", "--small", "--batch_size", "4", "--steps", "1", "--warmup", "0",
              "--torch_ref", fake_torch_ref)
    assert out["torch"]["batch"] == 1
    assert out["ours_over_torch"] == round(out["ours"]["faces_per_s"] / 8.0, 3)


def test_data_reads_the_configs_data_section_with_the_main_jobs_overrides(capsys, smoke_tfds_dir):
    out = run(capsys, "data", "--config", str(REPO / "configs" / "smoke.py"), f"--config.data.tfds_dir={smoke_tfds_dir}",
              "--batch_size", "4", "--steps", "2", "--warmup", "0", "--worker_count", "0")
    assert (out["source"], out["batch_size"], out["steps"]) == ("synthetic default", 4, 2)
    assert [(r["cache_decoded"], r["num_hr"]) for r in out["runs"]] == [(True, 64), (False, 64)]


def test_flags_are_checked_per_subcommand_with_absls_messages(capsys):
    for argv, message in ((["train", "--no_edge_share"], "Unknown command line flag 'no_edge_share'. Did you mean: edge_share ?"),
                          (["compare", "--out", "x.json"], "Unknown command line flag 'out'. Did you mean: output ?"),
                          (["infer", "--batch_size", "4"], "Unknown command line flag 'batch_size'"),
                          (["train", "--stage", "3"], "flag --stage=3: 3 is not an integer in the range [1, 2]"),
                          (["data", "--config.data.hr_sise=1"], 'Did you mean "hr_size" instead of "hr_sise"?')):
        assert benchmark.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("FATAL Flags parsing error: ") and message in err, (argv, err)
    for argv in (["--steps", "1", "train"], ["trian"], []):
        assert benchmark.main(argv) == 1
        err = capsys.readouterr().err
        assert ("the subcommand comes first, one of data, train" in err if argv
                else "expected a subcommand first, one of data, train" in err), err


def test_help_lists_the_subcommands_flags():
    proc = subprocess.run([sys.executable, "tools/benchmark.py", "compare", "--helpshort"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    for flag in ("--[no]small:", "--[no]torch_compile:", "--output:", "--dtypes:", "--budget_s:"):
        assert flag in proc.stdout, flag
