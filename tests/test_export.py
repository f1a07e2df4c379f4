"""Exported weights: round trip against the checkpoint, refused files, super_resolve and eval from them."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import smoke
from fsr_jax import checkpointing, config_checks, evaluate, export, inference, models, weights_file

#: Trains, evaluates or starts processes: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "fsr_jax" / "super_resolve.py"
NO_TF = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
         "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory):
    """{(net, dtype): file} of smoke_run's TNet and SNet, exported by the command's main()."""
    folder = tmp_path_factory.mktemp("exported")
    files = {}
    for net in ("tnet", "snet"):
        for dtype in ("float32", "float16"):
            files[net, dtype] = folder / f"{net}_{dtype}.msgpack"
            assert export.main(["--workdir", str(smoke_run), "--net", net, "--output", str(files[net, dtype]),
                                "--dtype", dtype]) == 0
    return files


def checkpoint_outputs(smoke_run, lr):
    params, _ = inference.load_sr_networks(smoke_run, ("snet",))
    model = models.build_sr(inference.run_config(smoke_run).model)
    return np.asarray(model.apply({"params": params["snet"]}, lr)), params["snet"]


def test_round_trip_gives_the_checkpoints_outputs(exported, smoke_run, load_faces):
    lr = load_faces("test/celeba/LR", 8).astype(np.float32) / 255.0
    expected, ckpt_params = checkpoint_outputs(smoke_run, lr)
    model, params, meta = weights_file.load_weights(exported["snet", "float32"], net="snet")
    run = inference.run_config(smoke_run)
    assert meta["net"] == "snet" and meta["step"] == 2 and meta["dtype"] == "float32"
    assert meta["model"] == json.loads(run.model.to_json())
    assert meta["data"] == {"lr_size": 16, "hr_size": 64}
    flat, flat_ckpt = weights_file.flat(params), weights_file.flat(ckpt_params)
    assert flat.keys() == flat_ckpt.keys()
    assert all(np.array_equal(flat[k], flat_ckpt[k]) and flat[k].dtype == np.float32 for k in flat)
    np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, lr)), expected)

    # float16 storage: each weight within float16's rounding (relative 2^-11) of the checkpoint's,
    # loaded as float32 and half the file size.
    model16, params16, meta16 = weights_file.load_weights(exported["snet", "float16"])
    assert meta16["dtype"] == "float16"
    assert exported["snet", "float16"].stat().st_size < 0.55 * exported["snet", "float32"].stat().st_size
    for k, value in weights_file.flat(params16).items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, flat_ckpt[k], rtol=2.0**-11, atol=2.0**-24)
    out16 = np.asarray(model16.apply({"params": params16}, lr))
    # Iteration 1 is a smooth function of the weights: relative weight errors <= 2^-11 give
    # output errors of that order (measured: 7e-5 on [0, 1]); 1e-3 is a quarter of an 8-bit level.
    assert np.abs(out16[0] - expected[0]).max() < 1e-3
    # Iterations 2 and 3 take the Canny edges of the previous image: a pixel at a threshold can
    # flip, which changes its neighbourhood (measured: max 0.03-0.06), so bound the mean error
    # and the share of 8-bit pixels off by more than one level.
    assert np.abs(out16[-1] - expected[-1]).mean() < 1e-3
    to8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(int)  # noqa: E731
    assert np.mean(np.abs(to8(out16[-1]) - to8(expected[-1])) > 1) < 0.01


def test_a_file_of_another_layout_or_net_is_refused_naming_the_file_and_fields(exported):
    path = exported["snet", "float32"]
    config = smoke.get_config()
    config.model.sr.groups = 3
    with pytest.raises(weights_file.WeightsError) as err:
        weights_file.load_weights(path, config.model, config.data)
    assert str(err.value) == f"{path}: model.sr.groups is 1 in the file, 3 in the config"
    config = smoke.get_config()
    config.data.update(lr_size=32, hr_size=128)
    config.model.sr.edges = ("canny",)
    with pytest.raises(weights_file.WeightsError, match=r"model\.sr\.edges is \['canny', 'dog'\] in the file, "
                       r"\['canny'\] in the config; data\.hr_size is 64 in the file, 128 in the config; "
                       r"data\.lr_size is 16 in the file, 32 in the config"):
        weights_file.load_weights(path, config.model, config.data)
    with pytest.raises(weights_file.WeightsError, match="net is 'snet' in the file, 'tnet' expected"):
        weights_file.load_weights(path, net="tnet")
    # Implementation choices and the computation dtype are the caller's: same function, same params.
    config = smoke.get_config()
    config.model.update(dtype="bfloat16")
    config.model.sr.update(canny_impl="opencv", projection="transpose")
    model, _, _ = weights_file.load_weights(path, config.model, config.data)
    assert (model.prior_field("canny_impl"), model.projection) == ("opencv", "transpose")


def test_a_file_of_an_older_fsr_jax_loads_under_todays_config(tmp_path):
    """Files whose model section has `sr.steps` (the name before `sr.iterations`) and
    `discriminator.spectral_norm: false` match today's config and build the same network."""
    import jax
    import jax.numpy as jnp

    config = smoke.get_config()
    model = models.build_sr(config.model)
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    old = json.loads(config.model.to_json())
    old["sr"]["steps"] = old["sr"].pop("iterations")
    old["discriminator"]["spectral_norm"] = False
    path = tmp_path / "old.msgpack"
    weights_file.save_weights(path, "snet", params, old, config.data, step=7)
    for expected in (config.model, None):
        loaded, _, meta = weights_file.load_weights(path, expected, config.data, net="snet")
        assert loaded == model and meta["model"]["sr"]["steps"] == 3
    config.model.sr.iterations = 2
    config.model.sr.edges = ("canny",)
    with pytest.raises(weights_file.WeightsError, match=r"model\.sr\.edges is .* model\.sr\.iterations is 3 in the "
                       r"file, 2 in the config"):
        weights_file.load_weights(path, config.model, config.data)


def test_foreign_truncated_tampered_and_missing_files_are_refused_clearly(exported, smoke_run, tmp_path):
    good = exported["tnet", "float32"].read_bytes()
    cases = {
        "config.json": ((smoke_run / "teacher_student" / "config.json").read_bytes(), "not an fsr_jax weights file"),
        "face.png": (b"\x89PNG\r\n\x1a\n" + bytes(64), "not an fsr_jax weights file"),
        "other.msgpack": (weights_file.serialization.msgpack_serialize({"params": {}}), "not an fsr_jax weights file"),
        "newer.msgpack": (good.replace(weights_file.FORMAT.encode(), b"fsr_jax-weights/9"), "weights format 'fsr_jax-weights/9'"),
        "truncated.msgpack": (good[:len(good) // 2], "truncated or corrupt"),
        "empty.msgpack": (b"", "truncated or corrupt"),
    }
    kernel = max(weights_file.flat(weights_file.serialization.msgpack_restore(good)["params"]).values(), key=np.size)
    at = good.find(kernel.tobytes()) + kernel.nbytes // 2
    tampered = bytearray(good)
    tampered[at] ^= 0x40  # one bit of a weight in the middle of the largest kernel
    cases["tampered.msgpack"] = (bytes(tampered), "do not match its SHA-256")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(weights_file.WeightsError, match=message) as err:
            weights_file.load_weights(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: "), err.value
    with pytest.raises(weights_file.WeightsError, match=f"{tmp_path / 'missing.msgpack'}: no such weights file"):
        weights_file.load_weights(tmp_path / "missing.msgpack")
    assert export.main(["--workdir", str(tmp_path), "--output", str(tmp_path / "x.msgpack")]) == 1


def test_the_export_command_refuses_bad_flags_with_absls_message(tmp_path, capsys):
    for argv, message in ((["--workdir", str(tmp_path)], "Flag --output must have a value other than None."),
                          (["--workdir", str(tmp_path), "--output", "x", "--net", "dsnet"],
                           "flag --net=dsnet: value should be one of <tnet|snet|denet>"),
                          (["--output", "x"], "Exactly one of (workdir, weights) must have a value"),
                          (["--workdir", str(tmp_path), "--weights", "w", "--output", "x"],
                           "Exactly one of (workdir, weights) must have a value"),
                          (["--workdir", str(tmp_path), "--output", "x", "--dtype=bfloat16"],
                           "value should be one of <float32|float16>"),
                          (["--workdir", str(tmp_path), "--out", "x"], "Unknown command line flag 'out'")):
        assert export.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("FATAL Flags parsing error: ") and message in err, err


def test_super_resolve_with_weights_writes_the_pngs_of_the_workdir_without_tensorflow(exported, smoke_run, tmp_path,
                                                                                       load_faces, capsys):
    from fsr_jax import super_resolve  # noqa: PLC0415

    inputs = tmp_path / "in"
    inputs.mkdir()
    for k, face in enumerate(load_faces("test/widerface/LR", 3)):
        Image.fromarray(face).save(inputs / f"face_{k}.png")
    assert super_resolve.main(["--workdir", str(smoke_run), "--net", "tnet", "--input", str(inputs),
                               "--output", str(tmp_path / "from_workdir")]) == 0
    proc = subprocess.run([sys.executable, "-c", NO_TF, str(TOOL), "--weights", str(exported["tnet", "float32"]),
                           "--input", str(inputs), "--output", str(tmp_path / "from_weights")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "from_workdir").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "from_weights").iterdir()) == ["face_0.png", "face_1.png", "face_2.png"]
    for name in names:
        assert (tmp_path / "from_workdir" / name).read_bytes() == (tmp_path / "from_weights" / name).read_bytes()
    capsys.readouterr()
    for args, message in ((["--workdir", str(smoke_run), "--weights", "x.msgpack"],
                           "At most one of (workdir, weights) must have a value other than None."),
                          (["--weights", "x.msgpack", "--step", "2"], "--step picks a checkpoint of --workdir"),
                          (["--step", "2"], "--step picks a checkpoint of --workdir")):   # the default weights
        assert super_resolve.main(args + ["--input", str(inputs), "--output", str(tmp_path / "refused")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("FATAL Flags parsing error: ") and message in err, err
    assert not (tmp_path / "refused").exists()


def test_evaluation_from_weights_alone(exported, smoke_run, faces_cfg, load_faces, tmp_path):
    config = smoke.get_config()
    config.data = faces_cfg.copy_and_resolve_references()
    config.eval.update(weights=f"{exported['tnet', 'float32']}, {exported['snet', 'float32']}",
                       test_sets=("celeba",), max_images=2, batch_size=2, grid_faces=2)
    results = evaluate.evaluate(config, str(tmp_path))  # no checkpoint in tmp_path
    assert results["nets"] == ["tnet", "snet"] and results["step"] == 2
    assert list(results["sets"]["celeba"]["methods"]) == ["bicubic", "tnet", "snet"]
    out = tmp_path / "eval" / "weights-2"
    assert "| SNet (Ours) |" in (out / "table.md").read_text()
    lr = load_faces("test/celeba/LR", 2)
    params, _ = inference.load_sr_networks(smoke_run, ("snet",))
    expected = inference.super_resolve(models.build_sr(inference.run_config(smoke_run).model), params["snet"], lr)
    names = sorted(p.name for p in (out / "images" / "celeba" / "snet").iterdir())
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(out / "images" / "celeba" / "snet" / n))
                                            for n in names]), expected)
    config.model.sr.features = 16
    with pytest.raises(weights_file.WeightsError, match="model.sr.features is 8 in the file, 16 in the config"):
        evaluate.evaluate(config, str(tmp_path))
    config.model.sr.features = 8
    config.eval.weights = f"{exported['snet', 'float32']},{exported['snet', 'float16']}"
    with pytest.raises(config_checks.ConfigError, match="both hold snet"):
        evaluate.evaluate(config, str(tmp_path))
    config.eval.step = 2
    with pytest.raises(config_checks.ConfigError, match="eval.step=2 picks a checkpoint"):
        evaluate.evaluate(config, str(tmp_path))


def test_one_loader_reads_a_runs_checkpoint_or_weights_files_with_the_same_result(exported, smoke_run, caplog):
    files = [str(exported["snet", "float32"]), str(exported["tnet", "float32"])]
    from_run, from_files = inference.load_trained_sr(smoke_run), inference.load_trained_sr(weights=files)
    assert list(from_run.params) == list(from_files.params) == ["tnet", "snet"]  # the order of `names`
    assert from_run.model == from_files.model and from_run.lr_size == from_files.lr_size == 16
    assert from_run.steps == from_files.steps == {"tnet": 2, "snet": 2} and from_files.step == 2
    for net in ("tnet", "snet"):
        flat, flat_run = weights_file.flat(from_files.params[net]), weights_file.flat(from_run.params[net])
        assert flat.keys() == flat_run.keys() and all(np.array_equal(flat[k], flat_run[k]) for k in flat)
    assert from_run.describe("tnet") == f"tnet of {smoke_run} (checkpoint 2)"
    assert from_files.describe("snet") == f"snet of {files[0]} (checkpoint 2)"
    assert list(inference.load_trained_sr(weights=files, names=("snet",)).params) == ["snet"]
    assert list(inference.load_trained_sr(smoke_run, names=("snet", "tnet")).params) == ["snet", "tnet"]
    with pytest.raises(weights_file.WeightsError) as err:
        inference.load_trained_sr(weights=files[:1], names=("tnet",))
    assert str(err.value) == f"{files[0]}: net is 'snet' in the file, 'tnet' expected"
    with pytest.raises(config_checks.ConfigError, match="both hold snet"):
        inference.load_trained_sr(weights=[files[0], exported["snet", "float16"]])
    for kwargs in ({}, {"workdir": smoke_run, "weights": files}, {"weights": files, "step": 2}):
        with pytest.raises(ValueError):
            inference.load_trained_sr(**kwargs)
    config = smoke.get_config()
    config.model.sr.features = 16
    with caplog.at_level("WARNING"):
        assert inference.load_trained_sr(smoke_run, model_config=config.model).model == from_run.model
    assert "config.model differs from the run's" in caplog.text
    with pytest.raises(weights_file.WeightsError, match="model.sr.features is 8 in the file, 16 in the config"):
        inference.load_trained_sr(weights=files, model_config=config.model)


def test_denet_exports_restores_in_float16_and_gives_the_checkpoints_report(smoke_run, faces_cfg, tmp_path):
    path, half = tmp_path / "denet.msgpack", tmp_path / "denet16.msgpack"
    assert export.main(["--workdir", str(smoke_run), "--net", "denet", "--output", str(path)]) == 0
    assert export.main(["--weights", str(path), "--output", str(half), "--dtype", "float16"]) == 0
    model, params, meta = weights_file.load_weights(path, smoke.get_config().model, net="denet")
    frozen, _ = checkpointing.restore_params(smoke_run / "teacher_student" / "checkpoints", ("denet",))
    flat, expected = weights_file.flat(params), weights_file.flat(frozen["denet"])
    assert flat.keys() == expected.keys() and all(np.array_equal(flat[k], expected[k]) for k in flat)
    assert isinstance(model, models.Downsampler) and meta["step"] == 2 and meta["net"] == "denet"
    _, params16, meta16 = weights_file.load_weights(half)
    assert meta16["dtype"] == "float16" and meta16["step"] == 2
    for k, value in weights_file.flat(params16).items():
        np.testing.assert_allclose(value, flat[k], rtol=2.0**-11, atol=2.0**-24)
    config = smoke.get_config()
    config.model.downsampler.blocks = 2
    with pytest.raises(weights_file.WeightsError, match="model.downsampler.blocks is 1 in the file, 2 in the config"):
        weights_file.load_weights(path, config.model)

    # Evaluation from the DeNet file alone: its report, equal to the checkpoint's.
    config = smoke.get_config()
    config.data = faces_cfg.copy_and_resolve_references()
    config.eval.update(weights=str(path), max_images=4, fid_reference_images=8, batch_size=8)
    from_file = evaluate.evaluate(config, str(tmp_path))
    config.eval.weights = ""
    from_run = evaluate.evaluate(config, str(smoke_run))
    assert from_file["sets"] == {} and (tmp_path / "eval" / "weights-2" / "grids" / "denet_sheet.png").is_file()
    assert from_file["denet"]["rows"] == from_run["denet"]["rows"]


def test_export_never_replaces_a_file_it_did_not_write_nor_writes_through_a_link(exported, smoke_run, tmp_path,
                                                                                  capsys):
    config = smoke_run / "teacher_student" / "config.json"
    before = config.read_bytes()
    victim = tmp_path / "victim"
    victim.write_text("outside")
    (tmp_path / "out.msgpack.partial").symlink_to(victim)   # the fixed temporary name of before
    (tmp_path / "folder").mkdir()
    for output, message in ((config, "exists and is not a file fsr_jax wrote"), (tmp_path / "folder", "is a folder")):
        assert export.main(["--workdir", str(smoke_run), "--output", str(output)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {output}") and message in err and "\n" not in err, err
    assert config.read_bytes() == before
    assert export.main(["--workdir", str(smoke_run), "--output", str(tmp_path / "out.msgpack")]) == 0
    assert export.main(["--workdir", str(smoke_run), "--output", str(tmp_path / "out.msgpack")]) == 0  # its own file
    assert victim.read_text() == "outside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.msgpack", "out.msgpack.partial", "victim"]
