"""The recipe end to end at smoke scale: results.md with both tables, loadable exports, resuming."""
import json
import pathlib

import pytest

from configs import smoke
from fsr_jax import weights_file

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_the_recipe_trains_evaluates_exports_and_writes_results(tmp_path, faces_cfg, faces_dir):
    from tools import reproduce  # noqa: PLC0415

    workdir = tmp_path / "W"
    argv = ["--smoke", f"--config.data.hr_dir={faces_cfg.hr_dir}", f"--config.data.lr_dir={faces_cfg.lr_dir}",
            "--test_set", f"celeba={faces_cfg.test_sets.celeba}", "--test_set", f"widerface={faces_cfg.test_sets.widerface}",
            "--workdir", str(workdir), f"--config.data.tfds_dir={faces_cfg.tfds_dir}", "--config.data.progress=false",
            "--config.degradation.max_steps=2", "--config.teacher_student.max_steps=2", "--config.eval.max_images=2",
            "--config.eval.fid_reference_images=4", "--config.eval.batch_size=2", "--config.eval.grid_faces=2"]
    assert reproduce.main(argv) == 0
    results = (workdir / "results.md").read_text()
    for text in ("Paired test sets (as Table 1", "Real-LR test sets (as Table 2", "| SNet (Ours) |",
                 "celeba PSNR↑", "widerface NIQE↓ (block 32)", "(N=2, ref=4)", "| training: degradation |",
                 "| training: teacher_student |", "python tools/reproduce.py --smoke",
                 "python -m fsr_jax.data.prepare --config configs/smoke.py", "python -m fsr_jax.main --config configs/smoke.py",
                 "--config.mode=eval",
                 f"--config.data.hr_dir={faces_cfg.hr_dir}",
                 "python -m fsr_jax.export --workdir"):
        assert text in results, text
    for grid in ("celeba_000", "widerface_000"):
        assert f"](eval/2/grids/{grid}.png)" in results and (workdir / "eval" / "2" / "grids" / f"{grid}.png").is_file()
    config = smoke.get_config()
    for net in ("tnet", "snet"):
        _, _, meta = weights_file.load_weights(workdir / "export" / f"{net}.msgpack", config.model, config.data, net)
        assert (meta["step"], meta["dtype"]) == (2, "float32")
    state = json.loads((workdir / "reproduce.json").read_text())
    assert {s: (r["steps"], r["runs"]) for s, r in state["stages"].items()} == {
        "degradation": (2, 1), "teacher_student": (2, 1)}
    assert all(r["seconds"] > 0 for r in state["stages"].values()) and state["eval"]["seconds"] > 0

    # Rerunning continues: nothing is trained or evaluated again; the times stay those measured.
    before = (workdir / "eval" / "2" / "metrics.json").stat().st_mtime_ns
    assert reproduce.main(argv) == 0
    assert json.loads((workdir / "reproduce.json").read_text())["stages"] == state["stages"]
    assert (workdir / "eval" / "2" / "metrics.json").stat().st_mtime_ns == before
    assert (workdir / "results.md").read_text().split("## Results")[1] == results.split("## Results")[1]


def test_the_recipe_refuses_bad_flags_in_one_line(capsys, tmp_path):
    from tools import reproduce  # noqa: PLC0415

    for argv, message in (
            (["--smoke"], "FATAL Flags parsing error: flag --workdir=None: Flag --workdir must have a value other "
                          "than None."),
            (["--workdir", str(tmp_path), "--hr_dir", str(tmp_path)], "FATAL Flags parsing error: Unknown command "
                                                                      "line flag 'hr_dir'"),
            (["--workdir", str(tmp_path), "--smoke", "--config.stage9.epochs=1"], "FATAL Flags parsing error: the "
                                                                                  "config has no field 'stage9'")):
        assert reproduce.main(argv) == 1
        assert capsys.readouterr().err.startswith(message)
    assert not list(tmp_path.iterdir())
    assert reproduce.main(["--workdir", str(tmp_path), "--config", str(REPO / "configs" / "degradation.py")]) == 1
    assert "the recipe evaluates TNet and SNet" in capsys.readouterr().err
