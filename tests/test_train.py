"""The training loop: exact resume, signals and kills, NaN stops, config checks, summaries."""
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import smoke
from fsr_jax import checkpointing, config_checks, data, losses, summaries, train
from fsr_jax.stages import teacher_student
from helpers import STAGE1, STAGE2

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
ALL_NETS = {STAGE1: ("denet", "d_lr"), STAGE2: ("tnet", "d_t", "snet", "d_s", "dsnet", "d_ds")}


@pytest.fixture
def tfds_dir(smoke_tfds_dir):
    return smoke_tfds_dir


def smoke_config(tfds_dir, s1=4, s2=4, **train_fields):
    config = smoke.get_config()
    config.data.tfds_dir = tfds_dir
    config.degradation.max_steps, config.teacher_student.max_steps = s1, s2
    config.train.update(dict(log_every=1, images_every=1000, checkpoint_every=2), **train_fields)
    return config


def final_params(workdir, stage):
    params, step = checkpointing.restore_params(pathlib.Path(workdir) / stage / "checkpoints", ALL_NETS[stage])
    return params, step


@pytest.fixture
def recorded_batches(monkeypatch):
    """The HR halves of every batch the loop feeds to its steps, in order."""
    seen = []
    original = data.shard_batch

    def spy(batch, mesh, stacked=False):
        seen.extend(np.array(batch["hr"]) if stacked else [np.array(batch["hr"])])
        return original(batch, mesh, stacked)

    monkeypatch.setattr(data, "shard_batch", spy)
    return seen


def test_a_stopped_and_resumed_run_equals_the_straight_run_bit_for_bit(tmp_path, tfds_dir, recorded_batches):
    train.train_and_evaluate(smoke_config(tfds_dir), str(tmp_path / "straight"))
    straight_batches = list(recorded_batches)
    recorded_batches.clear()
    resumed = str(tmp_path / "resumed")
    first = smoke_config(tfds_dir, s1=2)
    first.stages = (STAGE1,)
    train.train_and_evaluate(first, resumed)                       # stage 1 stops at 2
    train.train_and_evaluate(smoke_config(tfds_dir, s2=2), resumed)  # stage 1 2->4, stage 2 0->2
    train.train_and_evaluate(smoke_config(tfds_dir), resumed)        # stage 2 2->4
    assert len(recorded_batches) == len(straight_batches) == 8
    for a, b in zip(recorded_batches, straight_batches):
        np.testing.assert_array_equal(a, b)
    for stage in (STAGE1, STAGE2):
        (p_straight, s_straight), (p_resumed, s_resumed) = (final_params(w, stage) for w in (tmp_path / "straight", resumed))
        assert s_straight == s_resumed == 4
        for name in ALL_NETS[stage]:
            for a, b in zip(jax.tree_util.tree_leaves(p_straight[name]), jax.tree_util.tree_leaves(p_resumed[name])):
                np.testing.assert_array_equal(a, b, err_msg=f"{stage}/{name}")
    lines = (tmp_path / "straight" / STAGE2 / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    assert {"tnet/rec", "snet/rec", "cycle/lr", "learning_rate"} <= set(json.loads(lines[0]))
    # the first call's line has no rate (it would include compilation); the next ones do
    assert "images_per_second" not in json.loads(lines[0]) and "images_per_second" in json.loads(lines[1])


def test_four_steps_per_call_equal_one_step_per_call(tmp_path, tfds_dir, recorded_batches):
    """K = 4 steps per call give the parameters of K = 1 with the same batches; a stage of 6
    steps ends with a call of 2; checkpoints and logs land on call boundaries. Not to the last
    bit: XLA compiles the 4-step program a little differently, and Adam divides each gradient by
    its own running scale, so a rounding difference in a near-zero gradient moves its parameter
    by a fraction of one step (at most lr). The bound: 1e-4 relative plus a tenth of lr."""
    train.train_and_evaluate(smoke_config(tfds_dir, s1=8, s2=6, checkpoint_every=4), str(tmp_path / "one"))
    one_batches = list(recorded_batches)
    recorded_batches.clear()
    four = smoke_config(tfds_dir, s1=8, s2=6, checkpoint_every=4, log_every=2, steps_per_call=4)
    train.train_and_evaluate(four, str(tmp_path / "four"))
    assert len(recorded_batches) == len(one_batches) == 14
    for a, b in zip(recorded_batches, one_batches):
        np.testing.assert_array_equal(a, b)
    for stage, steps in ((STAGE1, 8), (STAGE2, 6)):
        (p_one, s_one), (p_four, s_four) = (final_params(tmp_path / w, stage) for w in ("one", "four"))
        assert s_one == s_four == steps
        for name in ALL_NETS[stage]:
            for a, b in zip(jax.tree_util.tree_leaves(p_one[name]), jax.tree_util.tree_leaves(p_four[name])):
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=0.1 * four.optimizer.learning_rate,
                                           err_msg=f"{stage}/{name}")
    lines = (tmp_path / "four" / STAGE2 / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [4, 6]
    assert sorted(int(p.name) for p in (tmp_path / "four" / STAGE1 / "checkpoints").iterdir()) == [4, 8]


def test_stage2_resumes_from_its_own_checkpoint_without_the_stage1_run(tmp_path, tfds_dir, caplog):
    # A stage-2 checkpoint holds the frozen DeNet: resuming needs neither stage 1's checkpoints
    # (deleted here) nor reads them.
    train.train_and_evaluate(smoke_config(tfds_dir, s1=1, s2=2), str(tmp_path))
    denet_then, _ = checkpointing.restore_params(tmp_path / STAGE2 / "checkpoints", ("denet",))
    shutil.rmtree(tmp_path / STAGE1)
    config = smoke_config(tfds_dir, s2=4)
    config.stages = (STAGE2,)
    with caplog.at_level("INFO"):
        train.train_and_evaluate(config, str(tmp_path))
    assert "takes DeNet from" not in caplog.text
    params, step = checkpointing.restore_params(tmp_path / STAGE2 / "checkpoints", ("denet", "tnet"))
    assert step == 4
    for a, b in zip(jax.tree_util.tree_leaves(denet_then["denet"]), jax.tree_util.tree_leaves(params["denet"])):
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_a_nan_loss_stops_the_run_naming_the_term_and_keeps_the_last_good_checkpoint(
        tmp_path, tfds_dir, monkeypatch, steps_per_call):
    # Losses are fetched only at log / image / checkpoint steps (here every 2nd step), so the
    # NaN of step 3 is found at step 4, before checkpoint 4 could be written. With 2 steps per
    # call, steps 3 and 4 run in one call, and the message still names step 3.
    config = smoke_config(tfds_dir, s1=2, log_every=100, steps_per_call=steps_per_call)
    config.stages = (STAGE1,)
    config.degradation.content_weight = 0.999   # its own compiled step, so the NaN below is traced in
    train.train_and_evaluate(config, str(tmp_path))
    monkeypatch.setattr(losses, "l1", lambda a, b: np.nan * (a.mean() - b.mean()))
    config.degradation.update(max_steps=4, content_weight=0.998)
    with pytest.raises(train.NonFiniteLossError, match=r"'denet/content' is nan at step 3"):
        train.train_and_evaluate(config, str(tmp_path))
    params, step = final_params(tmp_path, STAGE1)
    assert step == 2
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(params))


def test_summaries_fall_back_to_jsonl_and_png_without_an_event_writer(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsr_jax.event_writer", None)  # import now raises ImportError
    writer = summaries.SummaryWriter(tmp_path)
    assert writer.tensorboard is None
    writer.scalars(5, {"tnet/rec": 0.25})
    writer.images(5, {"stage/tnet": np.zeros((64, 128, 3), np.uint8)})
    writer.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 5, "tnet/rec": 0.25}
    assert (tmp_path / "images" / "stage_tnet_00000005.png").is_file()


def test_image_grids_show_lr_the_iterations_edges_and_targets_under_titles(tmp_path, tfds_dir):
    config = smoke_config(tfds_dir, s1=1, s2=1, images_every=1)
    train.train_and_evaluate(config, str(tmp_path))
    from PIL import Image

    n, size = config.train.summary_images, config.data.hr_size
    columns = {"degradation_denet": 4, "teacher_student_tnet": 7, "teacher_student_snet": 7}
    for name, count in columns.items():
        (path,) = (tmp_path / name.split("_")[0].replace("teacher", "teacher_student") / "images").glob(f"{name}_*.png")
        width, height = Image.open(path).size   # the faces, under a band of column titles (6-12 px text)
        assert width == count * size and 12 <= height - n * size <= 18, (name, width, height)


def _invalid(config_edit, workdir, devices=1):
    config = smoke.get_config()
    config_edit(config)
    with pytest.raises(config_checks.ConfigError) as err:
        config_checks.validate(config, workdir, devices)
    return str(err.value)


def test_invalid_values_are_refused_before_any_work(tmp_path):
    def stage2_only(c):
        c.stages = (STAGE2,)
    assert "no stage-1 checkpoint in" in _invalid(stage2_only, tmp_path)
    assert "degradation.batch_size=8 must be a positive multiple of the 3 devices" in _invalid(lambda c: None, tmp_path, 3)
    assert "teacher_student.gan_loss must be one of" in _invalid(lambda c: setattr(c.teacher_student, "gan_loss", "wgan"), tmp_path)
    assert "teacher_student.teacher must be one of" in _invalid(lambda c: setattr(c.teacher_student, "teacher", "oracle"), tmp_path)
    assert "model: edges must be" in _invalid(lambda c: setattr(c.model.sr, "edges", ("sobel",)), tmp_path)
    assert "data.hr_dir and data.lr_dir go together" in _invalid(lambda c: setattr(c.data, "hr_dir", "x"), tmp_path)
    assert "train.checkpoint_every must be positive" in _invalid(
        lambda c: setattr(c.train, "checkpoint_every", 0), tmp_path)

    def several_steps_with_host_canny(c):
        c.train.steps_per_call, c.model.sr.canny_impl = 4, "opencv"
    assert ("train.steps_per_call=4 needs edge priors computed on the device, but ['canny'] run "
            "through a host callback with model.sr.canny_impl='opencv', which a loop of several steps "
            "on the device cannot run: set train.steps_per_call=1, or change model.sr.canny_impl") in _invalid(
        several_steps_with_host_canny, tmp_path)
    without_canny = smoke.get_config()
    several_steps_with_host_canny(without_canny)
    without_canny.model.sr.edges = ("dog",)    # the host Canny is never called: accepted
    config_checks.validate(without_canny, tmp_path, 1)


def main_command(workdir, *overrides, tfds_dir):
    return [sys.executable, "-m", "fsr_jax.main", "--config", str(REPO / "configs" / "smoke.py"),
            "--workdir", str(workdir), f"--config.data.tfds_dir={tfds_dir}", *overrides]


def run_main(workdir, *overrides, tfds_dir, env, timeout=300):
    return subprocess.run(main_command(workdir, *overrides, tfds_dir=tfds_dir), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.mark.parametrize("override, message", [
    ("--config.degradation.batchsize=3", "the config has no field 'batchsize'. Did you mean \"batch_size\""),
    ("--config.degradation.batch_size=many", "batch_size"),
])
def test_unknown_keys_and_wrong_types_are_refused_by_the_command(tmp_path, tfds_dir, subprocess_env,
                                                                 override, message):
    result = run_main(tmp_path, override, tfds_dir=tfds_dir, env=subprocess_env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert not (tmp_path / STAGE1).exists()


def _wait_for(predicate, process, timeout=240):
    start = time.time()
    while not predicate():
        assert process.poll() is None, "the run ended early"
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.2)


def test_sigkill_then_restart_continues_and_sigterm_saves_and_exits_0(tmp_path, tfds_dir, subprocess_env):
    stage1_only = ("--config.stages=('degradation',)", "--config.degradation.max_steps=100000",
                   "--config.train.checkpoint_every=3")
    log = tmp_path / "log.txt"
    ckpts = tmp_path / STAGE1 / "checkpoints"
    with open(log, "w") as out:
        first = subprocess.Popen(main_command(tmp_path, *stage1_only, tfds_dir=tfds_dir), stdout=out,
                                 stderr=subprocess.STDOUT, cwd=REPO, env=subprocess_env)
        _wait_for(lambda: (ckpts / "6").is_dir(), first)
        first.send_signal(signal.SIGKILL)
        first.wait()
    last_complete = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    with open(log, "w") as out:
        second = subprocess.Popen(main_command(tmp_path, *stage1_only, tfds_dir=tfds_dir), stdout=out,
                                  stderr=subprocess.STDOUT, cwd=REPO, env=subprocess_env)
        _wait_for(lambda: f"step {last_complete + 2}/" in log.read_text(), second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"resumed from checkpoint {last_complete}" in text
    assert "[degradation] compiling the training step" in text
    assert re.search(rf"step {last_complete + 1}/100000 \? img/s ETA \?", text)   # a line after the first call
    assert "SIGTERM: saving a checkpoint after the current step" in text
    stopped_at = int(text.split("signal 15: checkpoint ")[1].split()[0])
    assert stopped_at >= last_complete + 2
    assert checkpointing.restore_params(ckpts, ("denet",))[1] == stopped_at
    steps = [json.loads(line)["step"] for line in (tmp_path / STAGE1 / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] <= stopped_at   # each step once despite the kill


def test_denet_checkpoint_accepts_a_run_its_stage_folder_or_its_checkpoints(tmp_path):
    run = tmp_path / "stage1_run"
    (run / STAGE1 / "checkpoints").mkdir(parents=True)
    config = smoke.get_config()
    for given in (run, run / STAGE1, run / STAGE1 / "checkpoints"):
        config.teacher_student.denet_checkpoint = str(given)
        assert teacher_student.denet_checkpoints(config, tmp_path / "new") == run / STAGE1 / "checkpoints"
    config.teacher_student.denet_checkpoint = ""
    assert teacher_student.denet_checkpoints(config, tmp_path / "new") == tmp_path / "new" / STAGE1 / "checkpoints"


def test_a_signal_before_training_ends_the_job_at_once_with_one_line(tmp_path, tfds_dir, subprocess_env):
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        job = subprocess.Popen(main_command(tmp_path, tfds_dir=tfds_dir), stdout=out,
                               stderr=subprocess.STDOUT, cwd=REPO, env=subprocess_env)
        _wait_for(lambda: "training data:" in log.read_text(), job)   # set-up, before any step
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    text = log.read_text()
    assert "stopped: SIGTERM before training started: stopped, nothing to save" in text
    assert "Traceback" not in text
    assert not (tmp_path / STAGE1 / "checkpoints").exists() or not any((tmp_path / STAGE1 / "checkpoints").iterdir())


def test_a_second_ctrl_c_exits_at_once_and_the_compilation_cache_is_on_by_default(tmp_path, tfds_dir,
                                                                                   subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    cache = tmp_path / "compilation_cache"
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        job = subprocess.Popen(main_command(tmp_path / "w", "--config.degradation.max_steps=100000",
                                            f"--config.train.compilation_cache={cache}", tfds_dir=tfds_dir),
                               stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _wait_for(lambda: "step 1/100000" in log.read_text(), job)
        job.send_signal(signal.SIGINT)
        # Python runs one handler for signals that arrive before the main thread gets to it (on a
        # loaded machine, inside a long step): the second press counts once the first is answered.
        _wait_for(lambda: "SIGINT: saving a checkpoint after the current step" in log.read_text(), job)
        job.send_signal(signal.SIGINT)
        assert job.wait(timeout=120) == 128 + signal.SIGINT, log.read_text()[-3000:]
    assert "SIGINT again: exiting now without saving" in log.read_text()
    assert any(cache.iterdir()), "the compiled steps should be in the persistent cache"


def test_help_lists_every_config():
    result = subprocess.run([sys.executable, "-m", "fsr_jax.main", "--helpshort"], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    for path in (REPO / "configs").glob("[!_]*.py"):
        assert f"configs/{path.name}" in result.stdout + result.stderr


def test_a_long_cpu_run_is_announced_with_the_smoke_command_on_the_users_data(caplog):
    flops = {STAGE1: 400e9, STAGE2: 500e9}
    config = smoke.get_config()
    config.data.hr_dir, config.data.lr_dir = "/data/my faces/HIGH", "/data/LOW"
    with caplog.at_level("WARNING"):
        train.warn_if_cpu_run_is_long({STAGE1: 1680, STAGE2: 9000}, flops, config, "runs/mine/")
    assert "no accelerator: this config's 1680+9000 steps would take roughly" in caplog.text
    assert ("python -m fsr_jax.main --config configs/smoke.py --workdir runs/mine_smoke "
            "--config.data.hr_dir='/data/my faces/HIGH' --config.data.lr_dir=/data/LOW\n") in caplog.text + "\n"
    caplog.clear()
    with caplog.at_level("WARNING"):
        train.warn_if_cpu_run_is_long({STAGE1: 2, STAGE2: 2}, flops, config, "runs/mine")
    assert "no accelerator" not in caplog.text


def test_the_cadence_owes_lines_grids_and_checkpoints_at_the_first_boundary_past_each_multiple():
    cadence = train.Cadence(log_every=10, images_every=25, checkpoint_every=20, total_steps=60)
    assert cadence.due(0, 4, first_call=True, seconds_since_line=0, stopping=False) == (True, False, False)
    assert cadence.due(4, 8, False, 0, False) == (False, False, False)
    assert cadence.due(8, 12, False, 0, False) == (True, False, False)
    assert cadence.due(16, 20, False, 0, False) == (True, False, True)
    assert cadence.due(24, 28, False, 0, False) == (False, True, False)
    assert cadence.due(28, 32, False, train.PROGRESS_EVERY_S + 1, False) == (True, False, False)
    assert cadence.due(32, 36, False, 0, True) == (False, False, True)          # a stop saves
    assert cadence.due(56, 60, False, 0, False) == (True, False, True)          # the end logs and saves
