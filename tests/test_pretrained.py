"""The default weights: the shipped files, their pins, their use by super_resolve and evaluation."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import teacher_student
from fsr_jax import evaluate, inference, pretrained, super_resolve, weights_file
from fsr_jax.data import synthetic


@pytest.mark.parametrize("net", ["tnet", "snet"])
def test_each_shipped_file_has_its_pinned_hash_and_holds_the_papers_net_in_float16(net):
    path = pretrained.path(net)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == pretrained.SHA256[net]
    _, params, meta = weights_file.load_weights(path)
    paper = json.loads(teacher_student.get_config().model.to_json())
    assert (meta["net"], meta["step"], meta["dtype"]) == (net, 9000, "float16")
    assert meta["model"]["sr"] == paper["sr"]
    assert meta["data"] == {"lr_size": 16, "hr_size": 64}
    leaves = [np.asarray(x) for x in weights_file.flat(params).values()]
    assert sum(x.size for x in leaves) == meta["parameters"] == 3_669_407
    assert all(x.dtype == np.float32 and np.isfinite(x).all() for x in leaves)   # loaded as float32


def flip_last_bit(file):
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (flip_last_bit, "have SHA-256 "),
    (lambda f: f.unlink(), "cannot be read (No such file or directory)"),
])
def test_a_damaged_or_missing_default_file_is_named_with_the_fix(tmp_path, monkeypatch, damage, message):
    shutil.copy(pretrained.FOLDER / "snet.msgpack", tmp_path / "snet.msgpack")
    monkeypatch.setattr(pretrained, "FOLDER", tmp_path)
    damage(tmp_path / "snet.msgpack")
    with pytest.raises(weights_file.WeightsError) as err:
        pretrained.path("snet")
    assert str(err.value).startswith(f"the default snet weights {tmp_path / 'snet.msgpack'} {message}")
    assert str(err.value).endswith("reinstall fsr_jax (pip install -e .), or give weights files of your own")


def test_eval_weights_default_names_the_shipped_tnet_and_snet():
    assert evaluate.weight_files(" default, mine.msgpack") == [
        str(pretrained.FOLDER / "tnet.msgpack"), str(pretrained.FOLDER / "snet.msgpack"), "mine.msgpack"]


def test_super_resolve_without_weights_flags_runs_the_default_snet_and_says_so(tmp_path, capsys):
    lr = synthetic.lr_face(seed=0, index=0)
    Image.fromarray(lr).save(tmp_path / "face.png")
    assert super_resolve.main(["--input", str(tmp_path / "face.png"), "--output", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line == f"{pretrained.describe('snet')}, 1 input files"
    model, params, _ = weights_file.load_weights(pretrained.FOLDER / "snet.msgpack")
    expected = inference.super_resolve(model, params, lr[None])[0]
    written = np.asarray(Image.open(tmp_path / "out" / "face.png"))
    assert written.shape == (64, 64, 3)
    np.testing.assert_array_equal(written, expected)
    assert np.abs(written.astype(int) - inference.bicubic_upscale(lr[None], 4)[0]).mean() > 5
