"""Runs that survive damage: a corrupt newest checkpoint, a config that no longer fits the
checkpoints, and metrics.jsonl after several kills and resumes."""
import hashlib
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from configs import smoke
from fsr_jax import checkpointing, config_checks, inference, train
from fsr_jax.steps import STAGE1, STAGE2

NETS = {STAGE1: ("denet", "d_lr"), STAGE2: ("tnet", "d_t", "snet", "d_s", "dsnet", "d_ds")}


def config_of(tfds_dir, stages=(STAGE1,), s1=4, s2=2, **train_fields):
    config = smoke.get_config()
    config.data.tfds_dir = tfds_dir
    config.stages = stages
    config.stage1.max_steps, config.stage2.max_steps = s1, s2
    config.train.update(dict(log_every=1, images_every=1000, checkpoint_every=2), **train_fields)
    return config


def params_at(workdir, stage, step=None):
    folder = pathlib.Path(workdir) / stage / "checkpoints"
    return checkpointing.restore_params(folder, NETS[stage], step)


def assert_same_params(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)


def metric_lines(workdir, stage):
    return [json.loads(line) for line in (pathlib.Path(workdir) / stage / "metrics.jsonl").read_text().splitlines()]


def snapshot(folder: pathlib.Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mtime_ns)} of every file, and every folder with its mtime."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_file():
            out[key] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            out[key + "/"] = ("dir", path.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def stage1_runs(tmp_path_factory, smoke_tfds_dir):
    """Stage 1 trained straight to step 6, and to step 4 (checkpoints 2 and 4)."""
    root = tmp_path_factory.mktemp("stage1_runs")
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=6), str(root / "straight6"))
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=4), str(root / "four"))
    return root


def array_file(step_dir: pathlib.Path) -> pathlib.Path:
    """The largest array data file of a checkpoint (the one holding most parameters)."""
    return max((p for p in (step_dir / "state").rglob("d/*") if p.is_file()), key=lambda p: p.stat().st_size)


CORRUPTIONS = {
    "truncated array file": lambda step: _truncate(array_file(step)),
    "garbage array file": lambda step: _garbage(array_file(step)),
    "garbage tree metadata": lambda step: _garbage(step / "state" / "_METADATA"),
    "deleted data-iterator file": lambda step: (step / "data" / "metadata").unlink(),
}


def _truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
        tmp_path, stage1_runs, smoke_tfds_dir, corruption, caplog):
    workdir = tmp_path / "w"
    shutil.copytree(stage1_runs / "four", workdir)
    folder = workdir / STAGE1 / "checkpoints"
    CORRUPTIONS[corruption](folder / "4")
    damaged = snapshot(folder / "4")
    with caplog.at_level("INFO"):
        train.train_and_evaluate(config_of(smoke_tfds_dir, s1=6), str(workdir))
    assert f"checkpoint 4 at {folder / '4'} cannot be read" in caplog.text
    assert f"resumed from checkpoint 2 in {folder}" in caplog.text
    assert f"moved {folder / '4'} aside to {folder / '4.corrupt-1'}" in caplog.text
    # kept as it was, outside orbax's step names; the new checkpoint 4 did not collide with it
    assert snapshot(folder / "4.corrupt-1") == damaged
    assert sorted(p.name for p in folder.iterdir()) == ["2", "4", "4.corrupt-1", "6"]
    # the resumed run equals the straight run to the last bit
    (resumed, step), (straight, straight_step) = params_at(workdir, STAGE1), params_at(stage1_runs / "straight6", STAGE1)
    assert step == straight_step == 6
    assert_same_params(resumed, straight)


def test_a_second_corrupt_copy_of_a_step_gets_the_next_free_name(tmp_path):
    folder = tmp_path / "checkpoints"
    for content in ("first", "second"):
        (folder / "4").mkdir(parents=True)
        (folder / "4" / "x").write_text(content)
        checkpointing.set_aside(folder, 4)
    assert (folder / "4.corrupt-1" / "x").read_text() == "first"
    assert (folder / "4.corrupt-2" / "x").read_text() == "second"
    assert checkpointing.latest_step(folder) is None


def test_when_no_checkpoint_reads_the_run_stops_naming_each_and_moves_nothing(tmp_path, stage1_runs,
                                                                               smoke_tfds_dir):
    workdir = tmp_path / "w"
    shutil.copytree(stage1_runs / "four", workdir)
    folder = workdir / STAGE1 / "checkpoints"
    for step in ("2", "4"):
        _truncate(array_file(folder / step))
    before = snapshot(folder)
    with pytest.raises(checkpointing.CheckpointError) as err:
        train.train_and_evaluate(config_of(smoke_tfds_dir, s1=6), str(workdir))
    message = str(err.value)
    assert f"no checkpoint in {folder} can be read" in message
    assert f"checkpoint 4 at {folder / '4'} cannot be read" in message
    assert f"checkpoint 2 at {folder / '2'} cannot be read" in message
    assert snapshot(folder) == before


def test_readers_take_the_newest_readable_checkpoint_and_name_the_bad_one(tmp_path, stage1_runs, caplog):
    folder = tmp_path / "checkpoints"
    shutil.copytree(stage1_runs / "four" / STAGE1 / "checkpoints", folder)
    two, _ = checkpointing.restore_params(folder, ("denet",), 2)
    _garbage(array_file(folder / "4"))
    before = snapshot(folder)
    with caplog.at_level("WARNING"):
        params, step = checkpointing.restore_params(folder, ("denet",))
        names, names_step = checkpointing.saved_networks(folder)
    assert step == names_step == 2 and names == ("d_lr", "denet")
    assert_same_params(params, two)
    assert f"checkpoint 4 at {folder / '4'} cannot be read" in caplog.text
    assert "using checkpoint 2, the newest that reads" in caplog.text
    # a checkpoint asked for by its step is not replaced; the message says what to do
    with pytest.raises(checkpointing.CheckpointError) as err:
        checkpointing.restore_params(folder, ("denet",), 4)
    assert f"checkpoint 4 at {folder / '4'} cannot be read" in str(err.value)
    assert "the newest readable checkpoint there is 2" in str(err.value)
    assert snapshot(folder) == before  # readers move nothing


def test_stage2_and_evaluation_use_the_newest_readable_checkpoints(tmp_path, stage1_runs, smoke_tfds_dir,
                                                                   caplog):
    stage1 = tmp_path / "stage1"
    shutil.copytree(stage1_runs / "four", stage1)
    _truncate(array_file(stage1 / STAGE1 / "checkpoints" / "4"))
    config = config_of(smoke_tfds_dir, stages=(STAGE2,), s2=2, checkpoint_every=1)
    config.stage2.denet_checkpoint = str(stage1)
    workdir = tmp_path / "w"
    with caplog.at_level("WARNING"):
        train.train_and_evaluate(config, str(workdir))
    assert f"checkpoint 4 at {stage1 / STAGE1 / 'checkpoints' / '4'} cannot be read" in caplog.text
    frozen = checkpointing.restore_params(workdir / STAGE2 / "checkpoints", ("denet",))[0]
    assert_same_params(frozen, params_at(stage1_runs / "four", STAGE1, 2)[0]["denet"])
    one = inference.load_sr_networks(workdir, step=1)[0]
    _garbage(array_file(workdir / STAGE2 / "checkpoints" / "2"))
    params, step = inference.load_sr_networks(workdir)
    assert step == 1
    assert_same_params(params, one)
