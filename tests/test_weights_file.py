"""The weights-file format: the whole payload hashed, old files noted, crafted configs refused by field."""
import json
import logging
import os

import jax
import jax.numpy as jnp
import pytest
from flax import serialization

from configs import smoke
from fsr_jax import export, models, weights_file
from fsr_jax.errors import FileWriteError


@pytest.fixture(scope="module")
def snet(tmp_path_factory):
    """(path, model config, params) of a smoke-size SNet weights file (untrained)."""
    config = smoke.get_config()
    params = models.build_sr(config.model).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    path = tmp_path_factory.mktemp("weights") / "snet.msgpack"
    weights_file.save_weights(path, "snet", params, config.model, config.data, step=5)
    return path, config, params


def rewritten(path, out, change):
    """`path`'s file with its config changed by `change(meta)`, re-hashed as an attacker would
    (params hash and file hash both recomputed), written to `out`."""
    tree = serialization.msgpack_restore(path.read_bytes())
    meta = json.loads(tree["config"])
    change(meta)
    tree["config"] = json.dumps(meta)
    tree["sha256"] = weights_file.payload_digest(tree["config"], meta.get("params_sha256", "") if isinstance(meta, dict) else "")
    out.write_bytes(serialization.msgpack_serialize(tree))
    return out


def test_a_one_bit_change_of_the_config_is_refused(snet, tmp_path):
    path, _, _ = snet
    raw = path.read_bytes()
    needle = b'"iterations": 3'
    assert needle in raw
    changed = tmp_path / "changed.msgpack"
    changed.write_bytes(raw.replace(needle, b'"iterations": 7'))  # 3 -> 7 is one bit
    with pytest.raises(weights_file.WeightsError, match="config and parameters do not match its SHA-256"):
        weights_file.load_weights(changed)


def test_a_format_1_file_loads_with_one_line_naming_the_reexport_command(snet, tmp_path, caplog):
    path, config, _ = snet
    tree = serialization.msgpack_restore(path.read_bytes())
    tree["format"] = weights_file.FORMAT_1
    del tree["sha256"]
    old = tmp_path / "old.msgpack"
    old.write_bytes(serialization.msgpack_serialize(tree))
    with caplog.at_level(logging.WARNING):
        model, _, meta = weights_file.load_weights(old, config.model, config.data, net="snet")
    assert meta["format"] == weights_file.FORMAT_1 and model == models.build_sr(config.model)
    lines = [r.getMessage() for r in caplog.records if "format 1" in r.getMessage()]
    assert len(lines) == 1 and f"python -m fsr_jax.export --weights {old}" in lines[0], lines
    assert export.main(["--weights", str(old), "--output", str(tmp_path / "new.msgpack")]) == 0
    assert weights_file.load_weights(tmp_path / "new.msgpack")[2]["format"] == weights_file.FORMAT


@pytest.mark.parametrize("change, field", [
    (lambda m: m["data"].update(lr_size="16"), "data.lr_size is \"16\""),
    (lambda m: m["data"].update(lr_size=-16), "data.lr_size is -16; it must be from 1"),
    (lambda m: m["data"].update(lr_size=0), "data.lr_size is 0"),
    (lambda m: m["data"].pop("lr_size"), "data.lr_size is missing"),
    (lambda m: m["data"].update(lr_size=17), "data.hr_size 64 is not data.lr_size 17 x model.sr.scale 4"),
    (lambda m: m.update(model=[1, 2]), "model.sr is missing or not a mapping"),
    (lambda m: m["model"]["sr"].update(iterations=200), "model.sr.iterations is 200; it must be from 1 to 16"),
    (lambda m: m["model"]["sr"].update(features=True), "model.sr.features is true, not a int"),
    (lambda m: m["model"]["sr"].update(canny_thresholds=[0.1, float("nan")]), r"model.sr.canny_thresholds\[1\] is NaN"),
    (lambda m: m["model"]["sr"].update(edges="canny"), "model.sr.edges is \"canny\", not a"),
    (lambda m: m.update(net=["snet"]), r"net is \[\"snet\"\]"),
    (lambda m: m.update(dtype="int8"), "dtype is \"int8\", not one of"),
    (lambda m: m.update(step=-1), "step is -1"),
])
def test_crafted_configs_are_one_weights_error_naming_the_field(snet, tmp_path, change, field):
    path, _, _ = snet
    crafted = rewritten(path, tmp_path / "crafted.msgpack", change)
    with pytest.raises(weights_file.WeightsError, match=field) as err:
        weights_file.load_weights(crafted)
    assert str(err.value).startswith(f"{crafted}: its config cannot build a network: ")


def test_devices_pipes_and_oversized_files_are_refused_before_reading(snet, tmp_path, monkeypatch):
    with pytest.raises(weights_file.WeightsError, match="/dev/zero: not a regular file"):
        weights_file.load_weights("/dev/zero")
    fifo = tmp_path / "fifo.msgpack"
    os.mkfifo(fifo)
    with pytest.raises(weights_file.WeightsError, match="not a regular file"):  # would block if opened for reading
        weights_file.load_weights(fifo)
    monkeypatch.setattr(weights_file, "MAX_FILE_BYTES", 1000)
    with pytest.raises(weights_file.WeightsError, match=f"{snet[0]}: .* bytes, more than 1,000 for a weights file"):
        weights_file.load_weights(snet[0])


def test_save_refuses_to_replace_a_file_it_did_not_write_and_writes_nothing_through_a_link(snet, tmp_path):
    _, config, params = snet
    other = tmp_path / "config.json"
    other.write_text('{"keep": 1}')
    with pytest.raises(FileWriteError, match="not a file fsr_jax wrote"):
        weights_file.save_weights(other, "snet", params, config.model, config.data, step=1)
    assert other.read_text() == '{"keep": 1}'
    victim = tmp_path / "victim.txt"
    victim.write_text("outside")
    (tmp_path / "out.msgpack").symlink_to(victim)
    with pytest.raises(FileWriteError, match="symbolic link"):
        weights_file.save_weights(tmp_path / "out.msgpack", "snet", params, config.model, config.data, step=1)
    assert victim.read_text() == "outside"
