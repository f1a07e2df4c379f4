"""The results run rehearsed at smoke size: train (as on the GPU machine), then report (here)."""
import json
import pathlib
import shutil
import tarfile

import pytest

from fsr_jax import weights_file

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

FACE_COUNTS = {"train/HIGH": 24, "train/LOW": 48, "test/celeba/HR": 8, "test/widerface/LR": 24}


@pytest.fixture(scope="module")
def faces(faces_dir, tmp_path_factory):
    """A small copy of the shared faces in the layout the device run carries."""
    root = tmp_path_factory.mktemp("faces")
    for sub, count in FACE_COUNTS.items():
        (root / sub).mkdir(parents=True)
        for path in sorted((faces_dir / sub).glob("*.png"))[:count]:
            shutil.copy(path, root / sub / path.name)
    return root


@pytest.fixture(scope="module")
def device_run(faces, tmp_path_factory):
    from tools import device_results  # noqa: PLC0415

    out, scratch = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("scratch")
    argv = ["train", "--faces", str(faces), "--output", str(out), "--scratch", str(scratch), "--small",
            "--steps_per_call=2", "--budget_s=100000", "--stage2_reserve_s=0", "--remedies=clip",
            "--variants=bicubic_pairs"]
    assert device_results.main(argv) == 0
    return out


def test_the_run_writes_at_most_eight_small_files_with_every_step(device_run):
    files = sorted(p.name for p in device_run.iterdir())
    assert files == ["results.json", "snet.msgpack", "stage1.tar", "stage2.tar", "tnet.msgpack", "variants.tar"]
    assert all((device_run / f).stat().st_size <= 16 * 2**20 for f in files)
    results = json.loads((device_run / "results.json").read_text())
    assert results["small"] and results["steps_per_call"] == 2
    assert set(results["wall_seconds"]) >= {"prepare", "stage1 paper", "stage2", "variant bicubic_pairs", "total"}
    paper = results["stage1"]["paper"]
    assert paper["training"] == {**paper["training"], "steps": 6, "total_steps": 6, "finished": True}
    assert list(paper["rows"]) == ["bicubic", "denet", "real"] and "frechet" not in paper["rows"]["denet"]
    # The untrained-size DeNet after 6 steps is far from real LR: the remedy is tried, and the
    # DeNet kept is the candidate with the smallest realism gap.
    assert paper["flaws"] and list(results["stage1"]) == ["paper", "clip"]
    gaps = {n: c["realism_gap"] for n, c in results["stage1"].items()}
    assert results["chosen_denet"] == min(gaps, key=gaps.get)
    assert results["stage2"]["finished"] and results["variants"]["bicubic_pairs"]["finished"]
    with tarfile.open(device_run / "stage1.tar") as tar:
        names = tar.getnames()
    assert "denet.msgpack" in names and "stage1/clip/degradation/metrics.jsonl" in names
    assert any(n.startswith("stage1/paper/degradation/images/degradation_denet_") for n in names)
    for net in ("tnet", "snet"):
        _, _, meta = weights_file.load_weights(device_run / f"{net}.msgpack", net=net)
        assert meta["step"] == 6 and meta["dtype"] == "float32"


def test_the_report_evaluates_the_returned_weights_here(device_run, faces, faces_dir, tmp_path):
    from tools import device_results  # noqa: PLC0415

    workdir = tmp_path / "W"
    argv = ["report", "--parts", str(device_run), "--workdir", str(workdir),
            f"--test_set=celeba={faces_dir / 'test' / 'celeba'}",
            f"--test_set=widerface={faces_dir / 'test' / 'widerface'}",
            f"--config.data.hr_dir={faces / 'train' / 'HIGH'}", f"--config.data.lr_dir={faces / 'train' / 'LOW'}",
            f"--config.data.tfds_dir={tmp_path / 'tfds'}", "--config.eval.max_images=4",
            "--config.eval.fid_reference_images=8", "--config.eval.batch_size=4"]
    assert device_results.main(argv) == 0
    text = (workdir / "results.md").read_text()
    for part in ("## Wall times on the device", "| stage2 |", "## Stage 1: the DeNet candidates", "(chosen)",
                 "| SNet (Ours) |", "## DeNet as a model of real LR", "## Table 3", "| Ours-TNet-bicubic |",
                 "| Ours-SNet-bicubic |", "| Ours-SNet(Ours) |", "python tools/device_results.py report"):
        assert part in text, part
    metrics = json.loads((workdir / "eval" / "weights-6" / "metrics.json").read_text())
    assert metrics["nets"] == ["tnet", "snet"] and metrics["denet"]["step"] == 6
    assert pathlib.Path(metrics["weights"]["denet"]).name == "denet.msgpack"
