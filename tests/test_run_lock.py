"""One run per workdir: a second run is refused by name, a killed run's lock does not block."""
import os
import signal
import subprocess
import sys

import pytest

from fsr_jax import run_lock
from fsr_jax.errors import FileWriteError

HOLD = ("import sys, time; from fsr_jax import run_lock\n"
        "with run_lock.hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)")


@pytest.fixture
def holder(tmp_path):
    """A process holding tmp_path/'w''s lock (killed with SIGKILL at the end)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "w")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holder_does_not_block(tmp_path, holder):
    workdir = tmp_path / "w"
    with pytest.raises(run_lock.WorkdirBusyError, match=f"{workdir} is being trained by another run "
                                                        f"\\(process {holder.pid} on .* since "):
        with run_lock.hold(workdir):
            pytest.fail("took a held lock")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with run_lock.hold(workdir):
        assert f"process {os.getpid()} on" in (workdir / run_lock.LOCK_FILE).read_text()
    with run_lock.hold(workdir):  # released at the end of the block
        pass


def test_training_is_refused_before_any_work(tmp_path, holder, smoke_tfds_dir):
    from configs import smoke  # noqa: PLC0415
    from fsr_jax import train  # noqa: PLC0415

    config = smoke.get_config()
    config.data.tfds_dir = smoke_tfds_dir
    with pytest.raises(run_lock.WorkdirBusyError):
        train.train_and_evaluate(config, str(tmp_path / "w"))
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [run_lock.LOCK_FILE]


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "w").write_text("x")
    with pytest.raises(FileWriteError, match=f"cannot use {tmp_path / 'w'} as the workdir: "):
        with run_lock.hold(tmp_path / "w"):
            pass


def test_only_the_primary_process_takes_the_lock(tmp_path, holder):
    with run_lock.hold(tmp_path / "w", enabled=False):
        pass
