"""Stage 1 judged as a model of real LR: held-out HR faces through DeNet, next to their bicubic
downscaling and real LR faces.

`report` measures the three sets (`fsr_jax.metrics.lr_stats`: colour mean and spread,
sharpness, noise, values outside [0, 1]; with Inception features, a Frechet distance to real LR
faces) and names DeNet's flaws against bicubic; `markdown` renders it as a table; `contact_sheet`
shows HR | bicubic LR | DeNet LR | real LR with column titles. Real LR faces are unpaired with
the HR ones: the sheet's last column shows other faces.

A user reads it before spending stage 2 on a DeNet: a DeNet whose LR faces are no closer to real
LR than bicubic's (speckle, a colour cast, values out of range) teaches TNet the wrong inputs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fsr_jax import grids, inference
from fsr_jax.data import images
from fsr_jax.metrics import lr_stats
from fsr_jax.metrics.frechet import fid

#: Row names of the report, in order.
ROWS = {"bicubic": "bicubic(HR)", "denet": "DeNet(HR)", "real": "real LR"}


@functools.lru_cache(maxsize=4)
def _denet_fn(model) -> Callable:
    return jax.jit(lambda params, hr: model.apply({"params": params}, hr.astype(jnp.float32) / 255.0))


def denet_lr(model, params, hr: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """DeNet's LR faces of uint8 HR faces (N, S, S, 3): float32 (N, S/4, S/4, 3) on the [0, 1]
    scale, unclipped (as DeNet outputs them)."""
    fn = _denet_fn(model)
    batch_size = min(batch_size, 1 << max(len(hr) - 1, 0).bit_length())
    return inference.map_batches(lambda batch: fn(params, batch), np.asarray(hr, np.uint8), batch_size)


def to_uint8(faces: np.ndarray) -> np.ndarray:
    """float [0, 1] faces -> uint8, clipped and rounded (as saved)."""
    return np.round(np.clip(np.asarray(faces, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def bicubic_lr(hr: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, size, size, 3): PIL's bicubic downscaling of uint8 HR faces."""
    return np.stack([images.resize_bicubic(face, size) for face in hr])


def report(hr: np.ndarray, real: np.ndarray, denet: np.ndarray,
           features: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """DeNet's LR faces measured against bicubic LR and real LR.

    Args:
      hr: uint8 (N, S, S, 3) held-out HR faces.
      real: uint8 (M, s, s, 3) real LR faces (unpaired with `hr`).
      denet: float32 (N, s, s, 3) DeNet's output for `hr` on the [0, 1] scale, unclipped.
      features: uint8 faces -> (K, 2048) Inception features, or None (no Frechet distance).

    Returns:
      {"rows": {"bicubic" | "denet" | "real": `lr_stats.set_statistics` + "realism_gap" (+ with
       features "frechet": {"value", "n", "n_ref"})}, "flaws": DeNet's flaws against bicubic
       (`lr_stats.flaws`), "frechet_reference": how the reference was chosen, or absent}.
      The Frechet distances share one reference: real LR faces past the first N when M >= 2N (the
      first N then give the real row's distance, the floor at this N), else all M (no floor).
    """
    size = real.shape[1]
    sets = {"bicubic": bicubic_lr(hr, size), "denet": 255.0 * np.asarray(denet, np.float64), "real": real}
    rows = {name: lr_stats.set_statistics(faces) for name, faces in sets.items()}
    for stats in rows.values():
        stats["realism_gap"] = lr_stats.realism_gap(stats, rows["real"])
    result = {"rows": rows, "flaws": lr_stats.flaws(rows["denet"], rows["bicubic"], rows["real"])}
    if features is not None:
        n = len(hr)
        split = len(real) >= 2 * n
        reference = features(real[n:] if split else real)
        evaluated = {"bicubic": sets["bicubic"], "denet": to_uint8(denet)} | ({"real": real[:n]} if split else {})
        for name, faces in evaluated.items():
            value = fid(features(faces), reference)
            rows[name]["frechet"] = {"value": value.value, "n": value.n, "n_ref": value.n_ref}
        result["frechet_reference"] = (
            f"real LR faces {n + 1}-{len(real)}; the real row is faces 1-{n} against them (the floor at N={n})"
            if split else f"all {len(real)} real LR faces (too few for a floor at N={n})")
    return result


def _triple(values, digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def markdown(result: dict, hr_set: str, real_set: str) -> str:
    """The report as a markdown section: one row per set of LR faces, then DeNet's flaws."""
    rows = result["rows"]
    frechet = "frechet" in rows["denet"]
    header = ["LR faces", "N", "mean R / G / B", "std R / G / B", "sharpness (Laplacian var.)",
              "noise σ", "outside [0, 1]", "realism gap ↓"] + (["Fréchet distance to real LR ↓"] if frechet else [])
    lines = [f"## DeNet as a model of real LR ({hr_set} HR through DeNet; real LR: {real_set})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, label in ROWS.items():
        stats = rows[name]
        cells = [label, str(stats["n"]), _triple(stats["mean_rgb"]), _triple(stats["std_rgb"]),
                 f"{stats['laplacian_variance']:,.0f}", f"{stats['noise_sigma']:.2f}",
                 f"{100 * stats['outside_share']:.2f} %", f"{stats['realism_gap']:.3f}"]
        if frechet:
            fd = stats.get("frechet")
            cells.append(f"{fd['value']:.2f} (N={fd['n']}, ref={fd['n_ref']})" if fd else "-")
        lines.append("| " + " | ".join(cells) + " |")
    flaws = result["flaws"]
    lines += ["", "Values on the 8-bit scale; sharpness and noise (Immerkær's estimate) of the grey faces, "
              "averaged over faces. Realism gap: the summed absolute log ratios of each statistic to real "
              "LR's (0 = the same)."
              + (f" Fréchet distances against {result['frechet_reference']}." if frechet else ""), "",
              "DeNet against bicubic: " + (", ".join(flaws) if flaws else
                                           "no flaw (as close to real LR as bicubic, or closer, in every statistic)") + "."]
    return "\n".join(lines) + "\n"


def contact_sheet(hr: np.ndarray, denet: np.ndarray, real: np.ndarray, count: int = 8) -> np.ndarray:
    """uint8 (H, W, 3): `count` rows of HR | bicubic LR | DeNet LR | real LR, LR enlarged by
    pixel repetition to the HR size, with column titles. `denet` is DeNet's float output."""
    count = min(count, len(hr), len(real))
    size = hr.shape[1]
    columns = [hr[:count], bicubic_lr(hr[:count], real.shape[1]), to_uint8(denet[:count]), real[:count]]
    panels = [grids.to_panel(np.asarray(c, np.float32) / 255.0, size) for c in columns]
    return grids.titled_grid(panels, ["HR", "bicubic LR", "DeNet LR", "real LR"])
