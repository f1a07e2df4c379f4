"""fsr_jax.data.prepare: the command, its errors, and preparing/reading without TensorFlow."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np

from fsr_jax.data import prepare

REPO = pathlib.Path(__file__).resolve().parents[1]


def _small_set(root, faces_dir):
    """hr/ (6 faces), lr/ (5 faces), test/LR + test/HR (3 pairs) from the shared faces."""
    for name, src, n in (("hr", "train/HIGH", 6), ("lr", "train/LOW", 5)):
        (root / name).mkdir(parents=True)
        for f in sorted((faces_dir / src).iterdir())[:n]:
            shutil.copy(f, root / name / f.name)
    for part in ("LR", "HR"):
        (root / "test" / part).mkdir(parents=True)
        for f in sorted((faces_dir / "test" / "celeba" / part).iterdir())[:3]:
            shutil.copy(f, root / "test" / part / f.name)
    return root


def test_prepare_command_prints_every_dataset(tmp_path, faces_dir, capsys):
    root = _small_set(tmp_path / "src", faces_dir)
    rc = prepare.main(["--hr_dir", str(root / "hr"), "--lr_dir", str(root / "lr"),
                       "--test", f"mine={root / 'test'}", "--tfds_dir", str(tmp_path / "tfds")])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert [(d["dataset"], d["config"], d["examples"]) for d in lines] == [
        ("face_folder", None, 6), ("face_folder", None, 5), ("face_test_folder", "paired", 3)]
    assert all(d["dir"].startswith(str(tmp_path / "tfds")) for d in lines)


def test_prepare_command_lists_bad_files_and_fails(tmp_path, faces_dir, capsys):
    root = _small_set(tmp_path / "src", faces_dir)
    (root / "hr" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "hr" / "empty.png").write_bytes(b"")
    rc = prepare.main(["--hr_dir", str(root / "hr"), "--lr_dir", str(root / "lr"),
                       "--tfds_dir", str(tmp_path / "tfds")])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.png" in err and "empty.png" in err
    assert "on_bad_image='skip'" in err


def test_prepare_and_read_without_tensorflow(tmp_path, faces_dir):
    root = _small_set(tmp_path / "src", faces_dir)
    site = next(p for p in sys.path if p.endswith("site-packages"))
    farm = tmp_path / "site"  # site-packages minus TensorFlow itself
    farm.mkdir()
    for entry in os.listdir(site):
        if entry.startswith("tensorflow") and not entry.startswith(("tensorflow_datasets",
                                                                     "tensorflow_metadata")):
            continue
        (farm / entry).symlink_to(os.path.join(site, entry))
    script = textwrap.dedent(f"""
        import sys
        sys.path[:] = [p for p in sys.path if "site-packages" not in p]
        sys.path += [{str(farm)!r}, {str(REPO)!r}]
        from fsr_jax.data import prepare, datasets
        assert prepare.main(["--hr_dir", {str(root / 'hr')!r}, "--lr_dir", {str(root / 'lr')!r},
                             "--tfds_dir", {str(tmp_path / 'tfds')!r}]) == 0
        cfg = prepare.config_from_args(["--hr_dir", {str(root / 'hr')!r},
                                        "--lr_dir", {str(root / 'lr')!r},
                                        "--tfds_dir", {str(tmp_path / 'tfds')!r}])
        faces, names = datasets.read_faces(datasets.train_builders(cfg)[0])
        import numpy as np
        np.save({str(tmp_path / 'faces.npy')!r}, faces)
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("names", ",".join(names))
    """)
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    files = sorted((root / "hr").iterdir())
    assert f"names {','.join(f.name for f in files)}" in out.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "faces.npy"),
                                  np.stack([np.asarray(Image.open(f)) for f in files]))
