"""Evaluation of a smoke checkpoint on the shared faces, errors, and the Table 3 tool."""
import json
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import smoke
from fsr_jax import checkpointing, config_checks, evaluate, inference, metrics, models, tables
from fsr_jax.metrics import lr_stats, registry
from helpers import STAGE1, STAGE2

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
EVAL = dict(max_images=4, fid_reference_images=8, batch_size=8)
PAIRED = ("fid", "fid_n", "fid_n_ref", "lpips", "psnr", "ssim")
REAL = ("fid", "fid_n", "fid_n_ref", "niqe")


def eval_config(faces_cfg, **eval_fields):
    config = smoke.get_config()
    config.data = faces_cfg.copy_and_resolve_references()
    config.mode = "eval"
    config.eval.update(dict(EVAL, **eval_fields))
    return config


@pytest.fixture(scope="module")
def evaluated(smoke_run, faces_cfg):
    return evaluate.evaluate(eval_config(faces_cfg), str(smoke_run))


def test_eval_writes_a_complete_table_for_the_shared_test_sets(evaluated, smoke_run, faces_dir):
    out = smoke_run / "eval" / "2"
    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(evaluated))
    assert written["step"] == 2 and written["nets"] == ["tnet", "snet"]
    assert {k: s["kind"] for k, s in written["sets"].items()} == {"celeba": "paired", "widerface": "real"}
    for name, keys in (("celeba", PAIRED), ("widerface", REAL)):
        methods = written["sets"][name]["methods"]
        assert list(methods) == ["bicubic", "tnet", "snet"]
        for scores in methods.values():
            assert sorted(scores) == sorted(keys)
            assert all(math.isfinite(v) for v in scores.values())
            assert scores["fid_n"] == 4
        assert {m["fid_n_ref"] for m in methods.values()} == {4 if name == "celeba" else 8}
    table = (out / "table.md").read_text()
    for text in ("celeba FID↓", "celeba LPIPS↓", "celeba PSNR↑", "celeba SSIM↑", "widerface FID↓",
                 "widerface NIQE↓ (block 32)", "| Bicubic |", "| TNet |", "| SNet (Ours) |", "(N=4, ref=8)"):
        assert text in table
    lr_names = sorted(p.name for p in (faces_dir / "test" / "widerface" / "LR").glob("*.png"))[:4]
    assert sorted(p.name for p in (out / "images" / "widerface" / "snet").iterdir()) == lr_names
    grid = np.asarray(Image.open(out / "grids" / "celeba_000.png"))
    band = grid.shape[0] - 4 * 64  # LR | bicubic | TNet | SNet | HR under a title band
    assert grid.shape[1] == 5 * 64 and 10 <= band <= 20
    assert all((grid[:band, 64 * k:64 * (k + 1)] < 128).any() for k in range(5))  # a title over each


def test_paired_scores_are_those_of_the_saved_pngs_and_bicubic_is_pil(evaluated, smoke_run, faces_dir):
    names = sorted(p.name for p in (faces_dir / "test" / "celeba" / "HR").glob("*.png"))[:4]
    hr = np.stack([np.asarray(Image.open(faces_dir / "test" / "celeba" / "HR" / n).convert("RGB")) for n in names])
    lr = np.stack([np.asarray(Image.open(faces_dir / "test" / "celeba" / "LR" / n).convert("RGB")) for n in names])
    folder = smoke_run / "eval" / "2" / "images" / "celeba"
    for method in ("bicubic", "snet"):
        saved = np.stack([np.asarray(Image.open(folder / method / n)) for n in names])
        expected = float(np.mean(metrics.psnr(saved / 255.0, hr / 255.0)))
        assert evaluated["sets"]["celeba"]["methods"][method]["psnr"] == pytest.approx(expected, abs=1e-4)
    pil = np.stack([np.asarray(Image.fromarray(x).resize((64, 64), Image.BICUBIC)) for x in lr])
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(folder / "bicubic" / n)) for n in names]), pil)


def test_a_corrupt_checkpoint_is_reported_with_its_folder(tmp_path, smoke_run, faces_cfg):
    shutil.copytree(smoke_run / STAGE2, tmp_path / STAGE2)
    for f in (tmp_path / STAGE2 / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(checkpointing.CheckpointError, match=str(tmp_path / STAGE2 / "checkpoints")):
        evaluate.evaluate(eval_config(faces_cfg), str(tmp_path))
    with pytest.raises(config_checks.ConfigError, match="eval.max_images"):
        evaluate.evaluate(eval_config(faces_cfg, max_images=1), str(smoke_run))


def test_the_eval_command_ends_in_one_clear_line_without_a_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fsr_jax.main", "--config", "configs/smoke.py", "--workdir", str(tmp_path),
         "--config.mode=eval", f"--test_set=celeba={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no checkpoint in {tmp_path / STAGE2 / 'checkpoints'}"]
    assert "Traceback" not in proc.stderr


def cycle_teacher_run(smoke_run, workdir: pathlib.Path) -> pathlib.Path:
    """A run as configs/cycle_teacher.py leaves it: stage 2 only, TNet but no SNet."""
    params, _ = checkpointing.restore_params(smoke_run / STAGE2 / "checkpoints", ("tnet",))
    mgr = checkpointing.manager(workdir / STAGE2 / "checkpoints")
    checkpointing.save(mgr, 3, {"step": 3, "nets": {"tnet": {"params": params["tnet"]}}}, {})
    config = json.loads((smoke_run / STAGE2 / "config.json").read_text())
    config["stages"] = [STAGE2]
    # as a run of an earlier version saved it: the section under its old name (read through the upgrade)
    config["stage2"] = config.pop(STAGE2)
    config["stage2"].update(teacher="cycle", student=False)
    (workdir / STAGE2 / "config.json").write_text(json.dumps(config))
    return workdir


def test_the_table3_tool_writes_a_row_per_workdir_and_reuses_evaluations(tmp_path, smoke_run):
    cycle = cycle_teacher_run(smoke_run, tmp_path / "cycle")
    assert inference.load_sr_networks(cycle)[0].keys() == {"tnet"}  # no SNet: skipped
    table_file = tmp_path / "table3.md"
    args = [str(smoke_run), str(cycle), "--max_images=4", "--fid_reference_images=8", "--batch_size=8",
            f"--output={table_file}"]
    from tools import ablation_table  # noqa: PLC0415

    assert ablation_table.main(args) == 0
    rows = [line.split(" | ")[0].lstrip("| ") for line in table_file.read_text().splitlines()[2:] if line.startswith("|")]
    assert rows == ["+Canny+DoG(Ours)", "Ours-cycle", "Ours-TNet", "Ours-SNet(Ours)"]
    header = table_file.read_text().splitlines()[0]
    assert "celeba SSIM↑" in header and "widerface NIQE↓ (block 32)" in header
    saved = cycle / "eval" / "3" / "metrics.json"
    assert json.loads(saved.read_text())["nets"] == ["tnet"]
    before = saved.stat().st_mtime_ns
    assert ablation_table.main(args) == 0
    assert saved.stat().st_mtime_ns == before


def test_a_registered_metric_is_scored_by_name_and_shown_in_the_table_until_removed(load_faces, caplog):
    hr, lr = load_faces("test/celeba/HR", 4), load_faces("test/celeba/LR", 4)
    paired = {"bicubic": inference.bicubic_upscale(lr, 4)}
    real = {"bicubic": inference.bicubic_upscale(load_faces("test/widerface/LR", 4), 4)}
    reference = evaluate.features(load_faces("train/HIGH", 8), 8)
    toys = [metrics.Metric("mae", lambda x, y: np.abs(x - y).mean(axis=(1, 2, 3)), higher_is_better=False, digits=3,
                           needs=registry.PAIR, kinds=("paired",)),
            metrics.Metric("level", lambda image: float(image.mean()), higher_is_better=True, digits=2,
                           needs=registry.IMAGE, kinds=("real",))]
    for toy in toys:
        metrics.register(toy)
    try:
        with caplog.at_level("INFO"):
            sets = {"celeba": evaluate.score_set(paired, hr, lambda: reference, 8, "celeba"),
                    "widerface": evaluate.score_set(real, None, lambda: reference, 8, "widerface")}
        table = tables.results_table({"niqe_block_size": 32, "sets": sets}, "toys")
    finally:
        for toy in toys:
            metrics.unregister(toy.name)
    scores, real_scores = sets["celeba"]["methods"]["bicubic"], sets["widerface"]["methods"]["bicubic"]
    assert list(scores) == [*PAIRED[:3], "psnr", "ssim", "lpips", "mae"] and list(real_scores) == [*REAL, "level"]
    assert scores["mae"] == pytest.approx(np.abs(paired["bicubic"] / 255 - hr / 255).mean(), rel=1e-5)
    assert real_scores["level"] == pytest.approx((real["bicubic"] / 255).mean(), rel=1e-5)
    assert "| celeba FID↓ | celeba LPIPS↓ | celeba MAE↓ | celeba PSNR↑ | celeba SSIM↑ |" in table
    assert "| widerface FID↓ | widerface NIQE↓ (block 32) | widerface LEVEL↑ |" in table
    assert f"| {scores['ssim']:.4f} |" in table and f"| {scores['mae']:.3f} |" in table
    assert f"| {real_scores['level']:.2f} |" in table
    assert list(metrics.REGISTRY) == ["fid", "psnr", "ssim", "lpips", "niqe"]
    progress = [r.getMessage() for r in caplog.records]
    assert "celeba: Inception features of 8 faces for FID..." in progress
    assert any(line.startswith("celeba bicubic: PSNR, SSIM, LPIPS, MAE: ") and line.endswith(" s") for line in progress)
    again = evaluate.score_set(paired, hr, lambda: reference, 8)["methods"]["bicubic"]
    assert sorted(again) == sorted(PAIRED) and again["psnr"] == scores["psnr"]


def test_eval_reports_denet_as_a_model_of_real_lr_with_a_titled_contact_sheet(evaluated, smoke_run, load_faces):
    report = evaluated["denet"]
    assert (report["hr_set"], report["real_set"], report["step"]) == ("celeba", "widerface", 2)
    assert list(report["rows"]) == ["bicubic", "denet", "real"]
    # The DeNet row is that of the DeNet stage 2 trained on, run here on the same HR faces.
    params = checkpointing.restore_params(smoke_run / STAGE2 / "checkpoints", ("denet",))[0]["denet"]
    model = inference.run_config(smoke_run)
    denet = models.build_downsampler(model.model).apply({"params": params}, load_faces("test/celeba/HR", 4) / 255.0)
    expected = lr_stats.set_statistics(255.0 * np.asarray(denet, np.float64))
    for key in ("mean_rgb", "std_rgb", "laplacian_variance", "noise_sigma", "outside_share"):
        assert report["rows"]["denet"][key] == pytest.approx(expected[key], rel=1e-4, abs=1e-4)
    assert {report["rows"][n]["frechet"]["n"] for n in ("bicubic", "denet")} == {4}
    table = (smoke_run / "eval" / "2" / "table.md").read_text()
    assert "## DeNet as a model of real LR (celeba HR through DeNet; real LR: widerface)" in table
    sheet = np.asarray(Image.open(smoke_run / "eval" / "2" / "grids" / "denet_sheet.png"))
    assert sheet.shape[1] == 4 * 64 and sheet.shape[0] > 4 * 64


def test_a_run_of_stage_1_alone_is_evaluated_as_its_denet_report(tmp_path, smoke_run, faces_cfg):
    shutil.copytree(smoke_run / STAGE1, tmp_path / STAGE1)
    results = evaluate.evaluate(eval_config(faces_cfg), str(tmp_path))
    assert results["sets"] == {} and results["nets"] == [] and results["denet"]["step"] == 2
    out = tmp_path / "eval" / "degradation-2"
    assert json.loads((out / "metrics.json").read_text())["denet"]["flaws"] == results["denet"]["flaws"]
    assert "## DeNet as a model of real LR" in (out / "table.md").read_text()


def test_sr_faces_of_test_files_sharing_a_stem_are_written_apart(tmp_path):
    faces = np.stack([np.full((4, 4, 3), k, np.uint8) for k in range(3)])
    evaluate.write_images(tmp_path, {"snet": faces}, ["a.png", "a.jpg", "b.png"])
    written = {p.name: int(np.asarray(Image.open(p))[0, 0, 0]) for p in (tmp_path / "snet").iterdir()}
    assert written == {"a.png.png": 0, "a.jpg.png": 1, "b.png": 2}
