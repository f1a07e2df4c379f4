"""The metrics evaluation scores and tables show: one `Metric` entry each, in `REGISTRY`.

An entry says what the metric is called (its metrics.json key, its table label), how it is
computed, which way is better, how many digits the tables print, and what it needs:

- `PAIR`: a per-image score of SR against HR, `fn(sr, hr)` on (B, H, W, 3) batches in [0, 1]
  -> (B,); averaged over the set. Scored on paired test sets (those with HR).
- `IMAGE`: a per-image score without reference, `fn(image)` on one (H, W, 3) image in [0, 1]
  -> float; averaged over the set.
- `FEATURES`: a set-level score of Inception pool3 features, `fn(features, reference)` on
  (N, 2048) and (M, 2048) arrays -> float, or a dict of the fields to store, holding `name`
  (FID: "fid", "fid_n", "fid_n_ref"). The reference is the set's HR on a paired set and the
  HR training set on a real-LR set.

`kinds` names the test-set kinds ('paired', 'real') the metric is scored on. `evaluate` scores
every entry of a set's kind, by name; `tables` builds a column per entry: lower-is-better
columns first, then higher-is-better ones (as the paper's tables), each in registration order.

To add a metric, `register(Metric(...))` it (here, for one that ships with the package).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from fsr_jax.metrics.frechet import fid as _fid
from fsr_jax.metrics.naturalness import BLOCK_SIZE as NIQE_BLOCK_SIZE
from fsr_jax.metrics.naturalness import niqe
from fsr_jax.metrics.perceptual import lpips
from fsr_jax.metrics.quality import psnr, ssim
from fsr_jax.registry import Registry

PAIR, IMAGE, FEATURES = "pair", "image", "features"
NEEDS = (PAIR, IMAGE, FEATURES)
KINDS = ("paired", "real")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric of the evaluation tables.

    Attributes:
      name: its metrics.json key (and, upper-cased, its table label unless `label` is given).
      fn: how it is computed; the signature depends on `needs` (see the module docstring).
      higher_is_better: the table's arrow (↑ or ↓).
      digits: decimals the tables print.
      needs: PAIR, IMAGE or FEATURES.
      kinds: the test-set kinds it is scored on ('paired', 'real'); PAIR metrics only 'paired'.
      label: the table label; default `name.upper()`.
      cell: scores -> the table cell, where more than the rounded value is shown (FID's sizes).
      note: a run's metrics dict -> a note after the column label (NIQE's block size); "" none.
      legend: a sentence under the tables saying what a cell holds, when `cell` shows more.
      settings: written at the top level of metrics.json (e.g. {"niqe_block_size": 32}).
    """

    name: str
    fn: Callable
    higher_is_better: bool
    digits: int
    needs: str
    kinds: tuple[str, ...]
    label: str = ""
    cell: Callable[[Mapping[str, Any]], str] | None = None
    note: Callable[[Mapping[str, Any]], str] | None = None
    legend: str = ""
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.needs not in NEEDS:
            raise ValueError(f"metric {self.name!r}: needs must be one of {NEEDS}, got {self.needs!r}")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"metric {self.name!r}: kinds must be some of {KINDS}, got {self.kinds!r}")
        if self.needs == PAIR and tuple(self.kinds) != ("paired",):
            raise ValueError(f"metric {self.name!r}: a PAIR metric needs HR, so kinds must be ('paired',)")

    @property
    def header(self) -> str:
        """The column label with its arrow, e.g. 'PSNR↑'."""
        return (self.label or self.name.upper()) + ("↑" if self.higher_is_better else "↓")

    def format(self, scores: Mapping[str, Any]) -> str:
        """One table cell from a method's scores."""
        return self.cell(scores) if self.cell else f"{scores[self.name]:.{self.digits}f}"


REGISTRY: Registry[Metric] = Registry("metric")


def register(metric: Metric) -> Metric:
    """Add `metric` (after those registered before); ValueError if its name is taken."""
    return REGISTRY.register(metric.name, metric)


def unregister(name: str) -> Metric:
    """Remove the metric `name` and return it; KeyError naming the registered ones if absent."""
    return REGISTRY.unregister(name)


def scored_on(kind: str, needs: str | None = None) -> list[Metric]:
    """The metrics scored on test sets of `kind` (of `needs`, if given), in registration order."""
    return [m for m in REGISTRY.values() if kind in m.kinds and needs in (None, m.needs)]


def columns(kind: str) -> list[Metric]:
    """The table columns of test sets of `kind`: lower-is-better metrics, then higher-is-better."""
    return sorted(scored_on(kind), key=lambda m: m.higher_is_better)


def settings() -> dict[str, Any]:
    """The `settings` of every registered metric, merged (metrics.json's top-level fields)."""
    return {key: value for m in REGISTRY.values() for key, value in m.settings.items()}


def _fid_fields(features, reference) -> dict[str, Any]:
    result = _fid(features, reference)
    return {"fid": result.value, "fid_n": result.n, "fid_n_ref": result.n_ref}


# The paper's metrics. Scores are stored in this order; Tables 1 and 2 show FID, LPIPS, PSNR,
# SSIM (paired) and FID, NIQE (real-LR).
register(Metric("fid", _fid_fields, higher_is_better=False, digits=2, needs=FEATURES, kinds=KINDS,
                cell=lambda s: f"{s['fid']:.2f} (N={s['fid_n']}, ref={s['fid_n_ref']})",
                legend="FID cells: value (N=evaluated faces, ref=reference faces)"))
register(Metric("psnr", psnr, higher_is_better=True, digits=2, needs=PAIR, kinds=("paired",)))
register(Metric("ssim", ssim, higher_is_better=True, digits=4, needs=PAIR, kinds=("paired",)))
register(Metric("lpips", lpips, higher_is_better=False, digits=3, needs=PAIR, kinds=("paired",)))
register(Metric("niqe", niqe, higher_is_better=False, digits=4, needs=IMAGE, kinds=("real",),
                note=lambda results: f"block {results.get('niqe_block_size', 0)}",
                settings={"niqe_block_size": NIQE_BLOCK_SIZE}))
