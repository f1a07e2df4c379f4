"""Markdown tables of evaluation results, shaped like the paper's Tables 1, 2 (`results_table`)
and 3 (`ablation_table`). Pure functions of the metrics dicts `evaluate` writes:

  {"step": int, "niqe_block_size": int, "sets": {name: {"kind": "paired" | "real", "n": int,
   "methods": {method: {"fid": float, "fid_n": int, "fid_n_ref": int,
                        "lpips", "psnr", "ssim" (paired) | "niqe" (real): float}}}}}

The columns, their arrows, digits, notes and legends come from the metric registry
(`fsr_jax.metrics.registry`): a column per metric scored on the set's kind.
"""
from __future__ import annotations

import ml_collections

from fsr_jax.metrics import registry

METHOD_NAMES = {"bicubic": "Bicubic", "tnet": "TNet", "snet": "SNet (Ours)"}
# Table 3's rows, in the paper's order.
ABLATION_ROWS = ("baseline", "+Canny", "+Canny+DoG(Ours)", "Ours-cycle", "Ours-w/o-cycle",
                 "Ours-TNet-bicubic", "Ours-SNet-bicubic", "Ours-TNet", "Ours-SNet(Ours)")


def _legends() -> list[str]:
    """The registered metrics' legends (what a cell holds, e.g. FID's sizes), as sentences."""
    return [m.legend + "." for m in registry.REGISTRY.values() if m.legend]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _set_header(name: str, kind: str, results: dict) -> list[str]:
    """'<set> <label><arrow>' per column of `kind`, with the metric's note from `results`."""
    notes = [(m.header, m.note(results) if m.note else "") for m in registry.columns(kind)]
    return [f"{name} {header}" + (f" ({note})" if note else "") for header, note in notes]


def _kind_table(results: dict, kind: str) -> str | None:
    sets = {name: s for name, s in results["sets"].items() if s["kind"] == kind}
    if not sets:
        return None
    header = ["Method"]
    for name in sets:
        header += _set_header(name, kind, results)
    methods = [m for m in METHOD_NAMES if any(m in s["methods"] for s in sets.values())]
    rows = []
    for method in methods:
        row = [METHOD_NAMES[method]]
        for s in sets.values():
            scores = s["methods"].get(method)
            row += [m.format(scores) if scores else "-" for m in registry.columns(kind)]
        rows.append(row)
    return _markdown(header, rows)


def results_table(results: dict, title: str) -> str:
    """Markdown: paired sets as Table 1 (FID, LPIPS, PSNR, SSIM per set), real-LR sets as
    Table 2 (FID against the HR training set, NIQE with its block size), one row per method;
    a column per registered metric of the set's kind."""
    parts = [f"# {title}"]
    for kind, caption in (("paired", "Paired test sets (as Table 1; FID against the set's HR)"),
                          ("real", "Real-LR test sets (as Table 2; FID against the HR training set)")):
        table = _kind_table(results, kind)
        if table:
            sizes = ", ".join(f"{n}: {s['n']} faces" for n, s in results["sets"].items() if s["kind"] == kind)
            parts += [f"## {caption}", f"{sizes}.", table]
    return "\n\n".join(parts + _legends()) + "\n"


def variant_rows(run_cfg: ml_collections.ConfigDict, label: str) -> list[tuple[str, str]]:
    """Table 3 rows a run provides, as (row name, net), from the config it was trained with.

    The paper's variants differ from the full system in one respect each (edges, teacher pairs,
    cycle); a run differing in none gives "+Canny+DoG(Ours)", "Ours-TNet" and "Ours-SNet(Ours)",
    and one differing in several is named by `label` (e.g. its workdir).
    """
    s2 = run_cfg.teacher_student
    edges = tuple(run_cfg.model.sr.edges)
    changes = []
    if edges != ("canny", "dog"):
        changes.append({(): [("baseline", "snet")], ("canny",): [("+Canny", "snet")]}.get(edges))
    if s2.teacher == "cycle":
        changes.append([("Ours-cycle", "tnet")])
    elif s2.teacher == "bicubic":
        changes.append([("Ours-TNet-bicubic", "tnet"), ("Ours-SNet-bicubic", "snet")])
    if not s2.cycle and s2.teacher != "cycle":
        changes.append([("Ours-w/o-cycle", "snet")])
    if not changes:
        return [("+Canny+DoG(Ours)", "snet"), ("Ours-TNet", "tnet"), ("Ours-SNet(Ours)", "snet")]
    if len(changes) == 1 and changes[0] is not None:
        return changes[0]
    return [(f"{label} (TNet)", "tnet"), (f"{label} (SNet)", "snet")]


def ablation_table(rows: list[tuple[str, dict]], paired: str, real: str) -> str:
    """Markdown shaped like Table 3 from (row name, {"net": method, "workdir": str, "metrics": a
    run's metrics dict}) pairs: the row's net on the paired set (FID, LPIPS, PSNR, SSIM) and on
    the real-LR set (FID, NIQE), a column per registered metric. Rows named as in the paper come
    in its order, others after."""
    order = {name: i for i, name in enumerate(ABLATION_ROWS)}
    rows = sorted(rows, key=lambda r: order.get(r[0], len(order)))
    first = rows[0][1]["metrics"] if rows else {}
    header = ["Model"] + _set_header(paired, "paired", first) + _set_header(real, "real", first) + ["Run"]
    body = []
    for name, run in rows:
        cells = [name]
        for set_name, kind in ((paired, "paired"), (real, "real")):
            scores = run["metrics"]["sets"][set_name]["methods"][run["net"]]
            cells += [m.format(scores) for m in registry.columns(kind)]
        body.append(cells + [f"{run['workdir']} ({run['net']}, step {run['metrics']['step']})"])
    return "\n\n".join([_markdown(header, body), *_legends()]) + "\n"
