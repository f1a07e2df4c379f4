"""The paper's Table 3 from the ablation runs' workdirs.

  python tools/ablation_table.py runs/full runs/baseline runs/canny runs/no_cycle \\
      runs/cycle_teacher runs/bicubic_pairs --test_set ffhq=data/test/ffhq \\
      --test_set widerface=data/test/widerface --output table3.md

Each workdir's newest checkpoint is evaluated as `--config.mode=eval` would (with the run's
own config.json and the eval settings below), unless W/eval/<step>/metrics.json already holds
an evaluation with the same settings (then it is reused; --force re-evaluates). Rows are named
as in the paper from each run's config ("Ours-cycle" for teacher_student.teacher='cycle', ...); the
paired set gives FID, LPIPS, PSNR, SSIM and the real-LR set FID and NIQE.
"""
from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

from configs import teacher_student
from fsr_jax import checkpointing, cli, data, evaluate, files, inference, tables
from fsr_jax.errors import FsrJaxError
from fsr_jax.data.images import DataError


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    cli.define_test_sets(fv, "NAME=FOLDER (a folder with LR/ and optionally HR/), repeatable: a test "
                         "set added to each run's data.test_sets.")
    flags.DEFINE_string("paired", None, "Paired test set of the table (default: the first one).", flag_values=fv)
    flags.DEFINE_string("real", None, "Real-LR test set of the table (default: the first one).", flag_values=fv)
    flags.DEFINE_integer("max_images", 0, "Faces per test set (0: all).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("fid_reference_images", 0, "HR training faces for the real set's FID (0: all).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "Faces per SR / metric batch.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("force", False, "Re-evaluate even if metrics.json exists.", flag_values=fv)
    flags.DEFINE_string("output", None, "Also write the markdown table here.", flag_values=fv)


def run_eval_config(args: flags.FlagValues, workdir: str):
    """The run's own config with the eval settings of the command line (images and grids off)."""
    config = inference.run_config(workdir)
    data.add_test_sets(config.data, args.test_set)
    config.eval = teacher_student.get_config().eval
    config.eval.update(max_images=args.max_images, fid_reference_images=args.fid_reference_images,
                       batch_size=args.batch_size, save_images=False, grid_faces=0)
    return config


def run_metrics(args: flags.FlagValues, workdir: str) -> dict:
    """The run's metrics: reused from W/eval/<step>/metrics.json when its settings match, else evaluated."""
    config = run_eval_config(args, workdir)
    step = checkpointing.latest_step(inference.stage_dir(workdir) / "checkpoints")
    saved = evaluate.eval_dir(workdir, step) / "metrics.json" if step is not None else None
    if saved is not None and saved.is_file() and not args.force:
        metrics = json.loads(saved.read_text())
        wanted = json.loads(json.dumps(config.eval.to_dict(), default=list))
        if metrics.get("eval") == wanted and set(data.test_set_names(config.data)) <= set(metrics["sets"]):
            print(f"{workdir}: reusing {saved}")
            return metrics
    return evaluate.evaluate(config, workdir)


def table_set(runs: list[dict], kind: str, chosen: str | None) -> str:
    """The test set of `kind` ('paired' / 'real') the table shows: `chosen`, else the first one
    every run has; DataError when a run lacks it or it is of the other kind."""
    common = [n for n, s in runs[0]["sets"].items() if s["kind"] == kind and all(n in r["sets"] for r in runs)]
    if chosen is None and common:
        return common[0]
    if chosen not in common:
        raise DataError(f"{chosen or 'no ' + kind + ' test set'}: the {kind} test sets every run has "
                        f"are {common}; add one with --test_set NAME=FOLDER")
    return chosen


def run(args: flags.FlagValues, workdirs: list[str]) -> int:
    if not workdirs:
        raise app.UsageError("no workdir given: pass the trained runs, one per ablation config")
    try:
        runs = {w: run_metrics(args, w) for w in workdirs}
        paired = table_set(list(runs.values()), "paired", args.paired)
        real = table_set(list(runs.values()), "real", args.real)
        rows = []
        for workdir, metrics in runs.items():
            variants = tables.variant_rows(inference.run_config(workdir), pathlib.Path(workdir).name)
            rows += [(name, {"net": net, "workdir": workdir, "metrics": metrics})
                     for name, net in variants if net in metrics["nets"]]
        table = tables.ablation_table(rows, paired, real)
    except FsrJaxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(table)
    if args.output:
        files.write_text(args.output, table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv, positional=True)


if __name__ == "__main__":
    main()
