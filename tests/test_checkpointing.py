"""Runs that survive damage: a corrupt newest checkpoint, a config that no longer fits the
checkpoints, and metrics.jsonl after several kills and resumes."""
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import smoke
from fsr_jax import checkpointing, config_checks, inference, stages, summaries, train
from fsr_jax.steps import make_optimizer
from helpers import STAGE1, STAGE2

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

NETS = {STAGE1: ("denet", "d_lr"), STAGE2: ("tnet", "d_t", "snet", "d_s", "dsnet", "d_ds")}


def config_of(tfds_dir, stages=(STAGE1,), s1=4, s2=2, **train_fields):
    config = smoke.get_config()
    config.data.tfds_dir = tfds_dir
    config.stages = stages
    config.degradation.max_steps, config.teacher_student.max_steps = s1, s2
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


def array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    """Every array data file of a checkpoint. All of them are damaged: OCDBT may leave data files
    that hold only superseded nodes (which ones depends on the timing of the async writes), and
    damage to one of those alone would not be damage to the checkpoint."""
    return [p for p in (step_dir / "state").rglob("d/*") if p.is_file()]


CORRUPTIONS = {
    "truncated array file": lambda step: _truncate(array_files(step)),
    "garbage array file": lambda step: _garbage(array_files(step)),
    "garbage tree metadata": lambda step: _garbage(step / "state" / "_METADATA"),
    "deleted data-iterator file": lambda step: (step / "data" / "metadata").unlink(),
}


def _truncate(paths):
    for path in [paths] if isinstance(paths, pathlib.Path) else paths:
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _garbage(paths):
    for path in [paths] if isinstance(paths, pathlib.Path) else paths:
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
    resumed, step = params_at(workdir, STAGE1)
    straight, straight_step = params_at(stage1_runs / "straight6", STAGE1)
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
        _truncate(array_files(folder / step))
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
    _garbage(array_files(folder / "4"))
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
    _truncate(array_files(stage1 / STAGE1 / "checkpoints" / "4"))
    config = config_of(smoke_tfds_dir, stages=(STAGE2,), s2=2, checkpoint_every=1)
    config.teacher_student.denet_checkpoint = str(stage1)
    workdir = tmp_path / "w"
    with caplog.at_level("WARNING"):
        train.train_and_evaluate(config, str(workdir))
    assert f"checkpoint 4 at {stage1 / STAGE1 / 'checkpoints' / '4'} cannot be read" in caplog.text
    frozen = checkpointing.restore_params(workdir / STAGE2 / "checkpoints", ("denet",))[0]
    assert_same_params(frozen, params_at(stage1_runs / "four", STAGE1, 2)[0]["denet"])
    one = inference.load_sr_networks(workdir, step=1)[0]
    _garbage(array_files(workdir / STAGE2 / "checkpoints" / "2"))
    params, step = inference.load_sr_networks(workdir)
    assert step == 1
    assert_same_params(params, one)


@pytest.fixture(scope="module")
def both_stages(tmp_path_factory, smoke_tfds_dir):
    """Both stages trained for 2 steps (one checkpoint each, at step 2)."""
    workdir = tmp_path_factory.mktemp("both_stages") / "w"
    train.train_and_evaluate(config_of(smoke_tfds_dir, stages=(STAGE1, STAGE2), s1=2, s2=2), str(workdir))
    return workdir


def test_a_config_that_no_longer_fits_stops_with_one_message_and_changes_nothing(tmp_path, both_stages,
                                                                                  smoke_tfds_dir):
    workdir = tmp_path / "w"
    shutil.copytree(both_stages, workdir)
    config = config_of(smoke_tfds_dir, stages=(STAGE1, STAGE2), s1=4, s2=4)
    config.model.downsampler.features = 16      # DeNet (stage 1), DSNet and the frozen DeNet (stage 2)
    config.model.sr.features = 12               # TNet, SNet
    config.model.dtype = "bfloat16"             # computation only: not listed
    config.teacher_student.teacher_rec_weight = 0.5      # a loss weight: not listed
    config.degradation.batch_size = 4                # another sequence of batches
    before = snapshot(workdir)
    with pytest.raises(config_checks.ConfigError) as err:
        train.train_and_evaluate(config, str(workdir))
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"the config does not fit the checkpoints in {workdir}; nothing was changed")
    assert lines[1:] == [
        f"  - model.downsampler.features=16, but the checkpoints were trained with 8 (it changes the "
        f"networks of {STAGE1}, {STAGE2})",
        f"  - model.sr.features=12, but the checkpoints were trained with 8 (it changes the networks of {STAGE2})",
        f"  - degradation.batch_size=4, but checkpoint 2 in {workdir / STAGE1} was trained with 8: resume with "
        f"--config.degradation.batch_size=8, or train in a new --workdir",
    ]
    assert snapshot(workdir) == before
    # the workdir still resumes with the config it was trained with, and keeps that config.json
    train.train_and_evaluate(config_of(smoke_tfds_dir, stages=(STAGE1, STAGE2), s1=4, s2=2), str(workdir))
    assert params_at(workdir, STAGE1)[1] == 4
    assert json.loads((workdir / STAGE2 / "config.json").read_text())["model"]["sr"]["features"] == 8


def test_without_a_config_json_the_differing_arrays_are_named(tmp_path, both_stages, smoke_tfds_dir):
    workdir = tmp_path / "w"
    shutil.copytree(both_stages, workdir)
    (workdir / STAGE1 / "config.json").unlink()
    config = config_of(smoke_tfds_dir, s1=4)
    config.model.downsampler.blocks = 2
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.check_resume(config, workdir)
    message = str(err.value)
    assert (f"the networks of {STAGE1} differ from checkpoint 2 in {workdir / STAGE1} (there is no readable "
            f"{workdir / STAGE1 / 'config.json'}): nets.denet.params.block_1.Conv_0.bias absent in "
            f"the checkpoint, (8,) now; nets.denet.params.block_1.Conv_0.kernel absent in the checkpoint, "
            f"(3, 3, 8, 8) now;") in message
    config_checks.check_resume(config_of(smoke_tfds_dir, s1=4), workdir)  # the saved shapes: no error


def test_an_intact_checkpoint_of_other_shapes_is_not_taken_for_damage(tmp_path, stage1_runs):
    folder = tmp_path / "checkpoints"
    shutil.copytree(stage1_runs / "four" / STAGE1 / "checkpoints", folder)
    config = smoke.get_config()
    config.model.downsampler.features = 16
    spec = stages.step_spec(config, stages.get(STAGE1), steps_per_epoch=1)
    abstract = stages.abstract_state(spec, make_optimizer(spec.optimizer, 1))
    before = snapshot(folder)
    with pytest.raises(checkpointing.ShapeMismatchError,
                       match=f"checkpoint 4 at {folder / '4'} holds networks of other shapes than the config's"):
        checkpointing.restore(checkpointing.manager(folder), abstract)
    assert snapshot(folder) == before


def test_metrics_have_each_step_once_after_two_kills_and_resumes(tmp_path, stage1_runs, smoke_tfds_dir):
    """A kill after a step is logged but before the next checkpoint (here: that checkpoint
    removed, and a line cut mid-way) makes the rerun log those steps again."""
    workdir = tmp_path / "w"
    folder, metrics = workdir / STAGE1 / "checkpoints", workdir / STAGE1 / "metrics.jsonl"
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=3), str(workdir))   # logs 1-3, checkpoints 2, 3
    shutil.rmtree(folder / "3")
    with open(metrics, "a") as f:
        f.write('{"step": 4, "denet/cont')
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=5), str(workdir))   # from 2: logs 3-5, checkpoints 4, 5
    shutil.rmtree(folder / "5")
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=6), str(workdir))   # from 4: logs 5, 6
    lines, straight = metric_lines(workdir, STAGE1), metric_lines(stage1_runs / "straight6", STAGE1)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    for line, expected in zip(lines, straight):   # the resumed losses are the straight run's, bit for bit
        line.pop("images_per_second", None), expected.pop("images_per_second", None)
        assert line == expected


def test_truncating_metrics_keeps_the_file_when_nothing_is_past_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 0.5}\n{"step": 2, "a": 0.25}\n')
    mtime = path.stat().st_mtime_ns
    assert summaries.truncate_jsonl(path, 2) == 0 and path.stat().st_mtime_ns == mtime
    assert summaries.truncate_jsonl(path, 1) == 1
    assert path.read_text() == '{"step": 1, "a": 0.5}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_two_processes_resume_together_from_the_newest_readable_checkpoint(tmp_path, stage1_runs, smoke_tfds_dir,
                                                                           subprocess_env):
    """Every process skips the damaged checkpoint, the first one alone moves it aside, and both
    continue from the same step (the result: the straight run's, within the cross-process sum
    order's rounding)."""
    from test_distributed import REPO, finish, free_port  # noqa: PLC0415

    workdir = tmp_path / "w"
    shutil.copytree(stage1_runs / "four", workdir)
    folder = workdir / STAGE1 / "checkpoints"
    _garbage(folder / "4" / "state" / "_METADATA")   # every read needs it (see the next test)
    port = free_port()
    env = {**subprocess_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    command = [sys.executable, "-m", "fsr_jax.main", "--config", str(REPO / "configs" / "smoke.py"),
               "--workdir", str(workdir), f"--config.data.tfds_dir={smoke_tfds_dir}",
               f"--config.stages=('{STAGE1}',)", "--config.degradation.max_steps=6", "--config.train.log_every=1",
               "--config.train.images_every=1000", "--config.train.checkpoint_every=2",
               f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    processes = [subprocess.Popen(command + [f"--process_id={i}"], env=env, cwd=REPO, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    logs = [finish(p) for p in processes]
    for log in logs:
        assert f"checkpoint 4 at {folder / '4'} cannot be read" in log
        assert f"resumed from checkpoint 2 in {folder}" in log
        # not a traceback for each of the damaged checkpoint's reads that orbax left in flight
        assert "Event loop is closed" not in log and "Exception ignored" not in log
    assert f"moved {folder / '4'} aside" in logs[0] and "aside" not in logs[1]
    assert sorted(p.name for p in folder.iterdir()) == ["2", "4", "4.corrupt-1", "6"]
    (resumed, step), (straight, _) = params_at(workdir, STAGE1), params_at(stage1_runs / "straight6", STAGE1)
    assert step == 6
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert [line["step"] for line in metric_lines(workdir, STAGE1)] == [1, 2, 3, 4, 5, 6]


def test_the_main_job_reports_a_damaged_checkpoint_in_two_lines(tmp_path, stage1_runs, smoke_tfds_dir,
                                                               subprocess_env):
    """Not a traceback for each of the damaged checkpoint's reads that orbax leaves in flight
    (on one device, reading a checkpoint written over four: many reads are in flight then).
    The damage is to the tree metadata, which every read needs: with every array file truncated,
    TensorStore's abandoned reads can still print asyncio tracebacks from its own threads."""
    from test_distributed import REPO  # noqa: PLC0415

    workdir = tmp_path / "w"
    shutil.copytree(stage1_runs / "four", workdir)
    folder = workdir / STAGE1 / "checkpoints"
    _garbage(folder / "4" / "state" / "_METADATA")
    result = subprocess.run(
        [sys.executable, "-m", "fsr_jax.main", "--config", str(REPO / "configs" / "smoke.py"), "--workdir",
         str(workdir), f"--config.data.tfds_dir={smoke_tfds_dir}", f"--config.stages=('{STAGE1}',)",
         "--config.degradation.max_steps=6", "--config.train.checkpoint_every=2"],
        env={**subprocess_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, cwd=REPO,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint 4 at {folder / '4'} cannot be read" in result.stderr
    assert f"moved {folder / '4'} aside to {folder / '4.corrupt-1'}" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_a_full_disk_while_saving_is_one_line_and_the_rerun_resumes(tmp_path, smoke_tfds_dir, monkeypatch):
    """Orbax wraps the file system's OSError (as TensorStore's errors wrap ENOSPC): the run
    stops with one line naming the step and folder, and the rerun resumes from the checkpoint
    before."""
    import errno  # noqa: PLC0415
    import os  # noqa: PLC0415

    workdir = tmp_path / "w"
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=2), str(workdir))
    real_save = checkpointing.ocp.CheckpointManager.save

    def disk_full(self, step, *args, **kwargs):
        if step == 4:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as err:
                raise ValueError("Error writing checkpoint") from err
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpointing.ocp.CheckpointManager, "save", disk_full)
    folder = (workdir / STAGE1 / "checkpoints").resolve()
    with pytest.raises(checkpointing.CheckpointError, match=f"^no space left on device writing checkpoint 4 in "
                                                            f"{folder}; a rerun resumes"):
        train.train_and_evaluate(config_of(smoke_tfds_dir, s1=4), str(workdir))
    monkeypatch.undo()
    assert checkpointing.latest_step(folder) == 2
    train.train_and_evaluate(config_of(smoke_tfds_dir, s1=4), str(workdir))
    assert checkpointing.latest_step(folder) == 4
