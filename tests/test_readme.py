"""The README's commands, run as a new user runs them: from a folder holding only the project's
configs (no ../shared beside it), on the user's own folders (`my_faces/HIGH`, `my_faces/LOW`,
`photos/`, `faces/`: drawn here, and a real group photo from the weight cache).

Each shell block's commands run as written, in README order: training the smoke run, exporting
it as the README's prose says, super-resolving photos and face crops. The paper-recipe command
runs with one step per stage appended (as written it is hours on a CPU). Install and test
commands are what `.ci/run` runs; here they are only checked to be the ones it runs.
"""
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fsr_jax.data import synthetic
from fsr_jax.metrics import weights

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
EXPORT = "python -m fsr_jax.export --workdir runs/mine --net snet --output snet.msgpack"
PAPER_STEPS = ["--config.degradation.max_steps=1", "--config.teacher_student.max_steps=1"]


def shell_blocks() -> list[list[str]]:
    """Each ```bash block of the README as its commands (continuations joined, comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        commands.append([line.split("  #")[0].strip() for line in joined.splitlines()
                         if line.strip() and not line.lstrip().startswith("#")])
    return commands


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A folder as a user's: the project's configs, their face folders and photos, nothing else."""
    root = tmp_path_factory.mktemp("user")
    os.symlink(REPO / "configs", root / "configs")
    for folder, count, face in (("my_faces/HIGH", 48, lambda k: synthetic.hr_face(11, k)),
                                ("my_faces/LOW", 64, lambda k: synthetic.lr_face(11, k)),
                                ("faces", 3, lambda k: synthetic.lr_face(12, k))):
        (root / folder).mkdir(parents=True)
        for k in range(count):
            Image.fromarray(face(k)).save(root / folder / f"{k:03d}.png")
    try:
        group = weights.reference_file("insightface/data/images/t1.jpg")
    except weights.MissingWeightsError as err:
        pytest.skip(f"the group photo is not in the weight cache ({str(err)[:100]}); run: {weights.INSTALL_COMMAND}")
    (root / "photos").mkdir()
    Image.open(group).convert("RGB").reduce(6).save(root / "photos" / "group.png")   # faces of about 20 px
    assert not (root.parent / "shared").exists()
    return root


def run(command: str, cwd: pathlib.Path, timeout: int = 900) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-m"], command
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_install_and_test_blocks_are_what_ci_runs():
    blocks = shell_blocks()
    ci = (REPO / ".ci" / "run").read_text()
    assert blocks[0][0].startswith("pip install -e .") and "pip install -q -e '.[test]'" in ci
    assert blocks[-1][0] == "pip install -e '.[test]' && python -m fsr_jax.metrics.weights install"
    assert "python -m fsr_jax.metrics.weights install" in ci
    assert [c.split()[:3] for c in blocks[-1][1:]] == [["pytest"], ["pytest", "-m", "slow"]]
    assert "pytest --junitxml" in ci and "pytest -m slow --junitxml" in ci


def test_every_readme_command_runs_from_a_fresh_folder(user_folder):
    blocks = shell_blocks()
    super_resolve, smoke, paper = blocks[1], blocks[2], blocks[3]
    assert len(smoke) == 1 and "configs/smoke.py" in smoke[0]
    run(smoke[0], user_folder)
    assert EXPORT in " ".join(README.split())
    run(EXPORT, user_folder)
    for command in super_resolve:
        proc = run(command, user_folder)
        assert "error" not in proc.stderr.lower(), proc.stderr
    result = Image.open(user_folder / "out" / "group.png")
    assert result.size == tuple(4 * np.array(Image.open(user_folder / "photos" / "group.png").size))
    assert len(list((user_folder / "out" / "group_faces").glob("face_*.png"))) == 6
    assert sorted(p.name for p in (user_folder / "out").glob("0*.png")) == ["000.png", "001.png", "002.png"]
    assert len(paper) == 1 and "configs/teacher_student.py" in paper[0]
    run(" ".join([paper[0], *PAPER_STEPS]), user_folder)
    assert (user_folder / "runs" / "paper" / "teacher_student" / "checkpoints").is_dir()
