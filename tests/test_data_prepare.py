"""fsr_jax.data.prepare: the command, its flags (the main job's), its errors, and preparing/reading
without TensorFlow."""
import json
import os
import pathlib
import re
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
    rc = prepare.main([f"--config.data.hr_dir={root / 'hr'}", f"--config.data.lr_dir={root / 'lr'}",
                       "--test_set", f"mine={root / 'test'}", f"--config.data.tfds_dir={tmp_path / 'tfds'}"])
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
    rc = prepare.main([f"--config.data.hr_dir={root / 'hr'}", f"--config.data.lr_dir={root / 'lr'}",
                       f"--config.data.tfds_dir={tmp_path / 'tfds'}"])
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
        argv = [{f"--config.data.hr_dir={root / 'hr'}"!r}, {f"--config.data.lr_dir={root / 'lr'}"!r},
                {f"--config.data.tfds_dir={tmp_path / 'tfds'}"!r}]
        assert prepare.main(argv) == 0
        cfg = prepare.data_config(argv)
        faces, names = datasets.read_faces(datasets.train_builders(cfg)[0])
        import numpy as np
        np.save({str(tmp_path / 'faces.npy')!r}, faces)
        from fsr_jax import data
        cfg.cache_decoded = False  # the training batches straight from the array_record files
        iterator = data.make_train_iterator(cfg, global_batch_size=4, seed=0, process_index=0,
                                            process_count=1)
        batch = next(iterator)
        iterator.close()
        print("batch", batch["hr"].shape, batch["lr"].shape)
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("names", ",".join(names))
    """)
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    files = sorted((root / "hr").iterdir())
    assert f"names {','.join(f.name for f in files)}" in out.stdout
    assert "batch (4, 64, 64, 3) (4, 16, 16, 3)" in out.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "faces.npy"),
                                  np.stack([np.asarray(Image.open(f)) for f in files]))


def test_prepare_shows_one_bar_and_one_line_per_folder_and_no_download_talk(tmp_path,
                                                                           faces_dir):
    root = _small_set(tmp_path / "src", faces_dir)
    hr, lr, test = root / "hr", root / "lr", root / "test"
    command = [sys.executable, "-m", "fsr_jax.data.prepare", f"--config.data.hr_dir={hr}",
               f"--config.data.lr_dir={lr}", "--test_set", f"mine={test}",
               f"--config.data.tfds_dir={tmp_path / 'tfds'}"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    for tfds_talk in ("ownload", "Generating", "Shuffling", "Variant folder", "Done writing",
                      "Unknown size", "Subsequent calls"):
        assert tfds_talk not in text, tfds_talk
    # Progress bars redraw their line with carriage returns: the distinct bars are the
    # distinct descriptions in front of a percentage.
    frames = [f for f in re.split(r"[\r\n]", out.stderr) if re.search(r"\d+%\|", f)]
    counts = {f"preparing HR faces from {hr}": 6, f"preparing LR faces from {lr}": 5,
              f"preparing test set 'mine' from {test}": 3}
    assert {f.split(":")[0] for f in frames} == set(counts)
    for bar, count in counts.items():
        last = [f for f in frames if f.startswith(bar + ":")][-1]
        assert "100%" in last and f"{count}/{count}" in last, last
    for line in (f"preparing HR faces from {hr}: 6 images, into", f"HR faces from {hr}: 6 "
                 "images kept", f"preparing LR faces from {lr}: 5 images, into",
                 f"preparing test set 'mine' from {test}: 3 LR + 3 HR images, into"):
        assert sum(line in row for row in out.stderr.splitlines()) == 1, line

    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0 and not re.search(r"\d+%\|", again.stderr)
    assert f"HR faces from {hr}: reusing the prepared dataset in" in again.stderr


def test_prepare_takes_the_main_jobs_flags_and_prepares_what_it_trains_on(tmp_path, faces_dir):
    """The prepare command and the main job, given the same --config, --config.data.* and
    --test_set flags, name the same datasets: after preparing, the main job's flags (parsed by
    fsr_jax.main's own definitions) reuse every prepared dataset and prepare nothing."""
    root = _small_set(tmp_path / "src", faces_dir)
    same_flags = ["--config", str(REPO / "configs" / "smoke.py"), f"--config.data.hr_dir={root / 'hr'}",
                  f"--config.data.lr_dir={root / 'lr'}", f"--config.data.tfds_dir={tmp_path / 'tfds'}",
                  "--config.data.on_wrong_size=error", "--test_set", f"mine={root / 'test'}"]
    out = subprocess.run([sys.executable, "-m", "fsr_jax.data.prepare", *same_flags],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    prepared = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(prepared) == 3
    script = textwrap.dedent("""
        import json, sys
        from absl import flags, logging
        from fsr_jax import data, main
        flags.FLAGS(["fsr_jax.main", *sys.argv[1:]])
        logging.set_verbosity(logging.INFO)  # as the main job logs
        config = flags.FLAGS.config
        data.add_test_sets(config.data, flags.FLAGS.test_set)
        for builder in data.prepare_all(config.data):
            print(json.dumps({"dataset": builder.name, "dir": str(builder.data_dir)}))
    """)
    main_job = subprocess.run([sys.executable, "-c", script, *same_flags, "--workdir", str(tmp_path / "W")],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert main_job.returncode == 0, main_job.stderr[-3000:]
    reused = [json.loads(line) for line in main_job.stdout.splitlines() if line.startswith("{")]
    assert [(d["dataset"], d["dir"]) for d in reused] == [(d["dataset"], d["dir"]) for d in prepared]
    assert "reusing the prepared dataset" in main_job.stderr
    assert not [line for line in main_job.stderr.splitlines() if "preparing" in line and "into" in line]


def test_old_style_flags_are_refused_with_absls_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fsr_jax.data.prepare", "--hr_dir", str(tmp_path),
                          "--tfds_dir", str(tmp_path / "tfds")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 1 and not (tmp_path / "tfds").exists()
    assert out.stderr.startswith("FATAL Flags parsing error: Unknown command line flag 'hr_dir'"), out.stderr
    assert "Traceback" not in out.stderr


def test_bad_flags_are_refused_in_one_message(tmp_path, capsys):
    for argv, message in (
            (["--test", f"mine={tmp_path}"], "Unknown command line flag 'test'. Did you mean: test_set ?"),
            (["--test_set", "mine"], "test set 'mine': expected NAME=FOLDER"),
            (["--config.data.hr_sise=64"], 'Did you mean "hr_size" instead of "hr_sise"?'),
            (["--config.data.hr_size=large"], "flag --config.data.hr_size=large: invalid literal for int()"),
            ([str(tmp_path)], "unexpected arguments")):
        assert prepare.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "--helpshort" in err, (argv, err)


def test_the_default_config_is_the_papers():
    from configs import teacher_student

    assert prepare.data_config([]).to_dict() == teacher_student.get_config().data.to_dict()
    assert prepare.data_config(["--config", str(REPO / "configs" / "smoke.py")]).synthetic_hr == 64


def test_prepare_command_oversized_image_error_and_skip(tmp_path, faces_dir, capsys):
    from test_data_images import png_header

    root = _small_set(tmp_path / "src", faces_dir)
    (root / "hr" / "huge.png").write_bytes(png_header(15000, 15000))
    argv = [f"--config.data.hr_dir={root / 'hr'}", f"--config.data.lr_dir={root / 'lr'}",
            f"--config.data.tfds_dir={tmp_path / 'tfds'}"]
    assert prepare.main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: bad image {root / 'hr' / 'huge.png'}: too large: 225,000,000 pixels" in err
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert prepare.main([*argv, "--config.data.on_bad_image=skip"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert lines[0]["examples"] == 6


def test_prepare_command_refuses_bad_policies_and_test_set_names(tmp_path, capsys):
    rc = prepare.main(["--config.data.on_bad_image=sometimes",
                       f"--config.data.tfds_dir={tmp_path / 'tfds'}"])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip() == (
        "error: invalid data config: data.on_bad_image must be one of 'error', 'skip', "
        "got 'sometimes'")
    rc = prepare.main(["--test_set", f"../x={tmp_path}",
                       f"--config.data.tfds_dir={tmp_path / 'tfds'}"])
    err = capsys.readouterr().err
    assert rc != 0 and "test set name '../x': use only letters, digits, '_' and '-'" in err
    assert "Traceback" not in err and not (tmp_path / "tfds").exists()
