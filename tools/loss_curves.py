"""Loss curves of several runs side by side: a markdown table and a PNG chart.

  python tools/loss_curves.py runs/fp32 runs/bf16 --stage teacher_student \\
      --terms tnet/rec,snet/rec --output curves.png

Reads W/<stage>/metrics.jsonl of each workdir (one JSON line per log step) and prints, for each
term, one row per logged step with every run's value; `--output` also draws the curves (one
panel per term, one colour per run, log-scale losses). Runs without JAX or TensorFlow.
"""
from __future__ import annotations

import json
import math
import pathlib
import sys

from absl import app, flags
from PIL import Image, ImageDraw

from fsr_jax import cli

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
PANEL_W, PANEL_H, MARGIN = 420, 260, 40


def read_curves(workdir: pathlib.Path, stage: str) -> dict[str, dict[int, float]]:
    """{term: {step: value}} from W/<stage>/metrics.jsonl.

    Raises:
      FileNotFoundError: naming the file, when the run has no metrics for that stage.
    """
    path = pathlib.Path(workdir) / stage / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics (is {workdir} a run that trained stage {stage!r}?)")
    curves: dict[str, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for term, value in record.items():
            if term != "step":
                curves.setdefault(term, {})[record["step"]] = value
    return curves


def markdown(runs: dict[str, dict[str, dict[int, float]]], terms: list[str]) -> str:
    """One table per term: a row per step logged by any run, a column per run."""
    names = list(runs)
    out = []
    for term in terms:
        steps = sorted({s for curves in runs.values() for s in curves.get(term, {})})
        out += [f"**{term}**", "", "| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for step in steps:
            cells = [f"{runs[n][term][step]:.4g}" if step in runs[n].get(term, {}) else "" for n in names]
            out.append(f"| {step} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def draw(runs: dict[str, dict[str, dict[int, float]]], terms: list[str]) -> Image.Image:
    """Panels side by side, one per term; log10 of the loss against the step."""
    image = Image.new("RGB", (PANEL_W * len(terms), PANEL_H + 20 * len(runs)), "white")
    pen = ImageDraw.Draw(image)
    for k, term in enumerate(terms):
        points = [(s, v) for curves in runs.values() for s, v in curves.get(term, {}).items() if v > 0]
        if not points:
            continue
        s_lo, s_hi = min(p[0] for p in points), max(p[0] for p in points)
        v_lo, v_hi = (f(math.log10(p[1]) for p in points) for f in (min, max))
        left, top, width, height = k * PANEL_W + MARGIN, 20, PANEL_W - 2 * MARGIN, PANEL_H - 2 * MARGIN

        def xy(step, value):
            x = left + width * (step - s_lo) / max(s_hi - s_lo, 1)
            y = top + height * (1 - (math.log10(value) - v_lo) / max(v_hi - v_lo, 1e-9))
            return x, y

        pen.rectangle([left, top, left + width, top + height], outline="black")
        pen.text((left, 4), f"{term} (log scale {10 ** v_lo:.3g} .. {10 ** v_hi:.3g})", fill="black")
        pen.text((left, top + height + 4), f"step {s_lo} .. {s_hi}", fill="black")
        for colour, curves in zip(COLOURS, runs.values()):
            line = [xy(s, v) for s, v in sorted(curves.get(term, {}).items()) if v > 0]
            if len(line) > 1:
                pen.line(line, fill=colour, width=2)
    for i, (colour, name) in enumerate(zip(COLOURS, runs)):
        pen.text((MARGIN, PANEL_H + 20 * i), name, fill=colour)
    return image


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_enum("stage", "teacher_student", ("degradation", "teacher_student"), "The stage's curves.",
                      flag_values=fv)
    flags.DEFINE_list("terms", None, "Loss terms, comma-separated (default: every term of the first run).",
                      flag_values=fv)
    flags.DEFINE_string("output", None, "Also draw the curves into this PNG.", flag_values=fv)


def run(args: flags.FlagValues, workdirs: list[str]) -> int:
    if not workdirs:
        raise app.UsageError("no workdir given: pass the runs to compare")
    try:
        runs = {w: read_curves(pathlib.Path(w), args.stage) for w in workdirs}
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    terms = args.terms or sorted(next(iter(runs.values())))
    print(markdown(runs, terms))
    if args.output:
        draw(runs, terms).save(args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv, positional=True)


if __name__ == "__main__":
    main()
