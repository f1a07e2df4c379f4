"""The paper's Table 3 from the ablation runs' workdirs.

  python tools/ablation_table.py runs/full runs/baseline runs/canny runs/no_cycle \
      runs/cycle_teacher runs/bicubic_pairs --test_set ffhq=data/test/ffhq \
      --test_set widerface=data/test/widerface --output table3.md

Each workdir's newest checkpoint is evaluated as `--config.mode=eval` would (with the run's
own config.json and the eval settings below), unless W/eval/<step>/metrics.json already holds
an evaluation with the same settings (then it is reused; --force re-evaluates). Rows are named
as in the paper from each run's config ("Ours-cycle" for stage2.teacher='cycle', ...); the
paired set gives FID, LPIPS, PSNR, SSIM and the real-LR set FID and NIQE.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs/, fsr_jax/

from configs import teacher_student  # noqa: E402
from fsr_jax import checkpointing, config_checks, data, evaluate, inference, tables  # noqa: E402
from fsr_jax.data.config import parse_test_sets  # noqa: E402
from fsr_jax.data.images import DataError  # noqa: E402
from fsr_jax.metrics import MissingWeightsError  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", help="trained runs (one per ablation config)")
    parser.add_argument("--test_set", action="append", default=[], metavar="NAME=FOLDER",
                        help="test set added to each run's data.test_sets (repeatable)")
    parser.add_argument("--paired", help="paired test set of the table (default: the first one)")
    parser.add_argument("--real", help="real-LR test set of the table (default: the first one)")
    parser.add_argument("--max_images", type=int, default=0, help="faces per test set (0: all)")
    parser.add_argument("--fid_reference_images", type=int, default=0,
                        help="HR training faces for the real set's FID (0: all)")
    parser.add_argument("--batch_size", type=int, default=64, help="faces per SR / metric batch")
    parser.add_argument("--force", action="store_true", help="re-evaluate even if metrics.json exists")
    parser.add_argument("--output", type=pathlib.Path, help="write the markdown table here too")
    args = parser.parse_args(argv)
    try:
        parse_test_sets(args.test_set)
    except ValueError as err:
        parser.error(str(err))
    return args


def run_eval_config(args: argparse.Namespace, workdir: str):
    """The run's own config with the eval settings of the command line (images and grids off)."""
    config = inference.run_config(workdir)
    data.add_test_sets(config.data, args.test_set)
    config.eval = teacher_student.get_config().eval
    config.eval.update(max_images=args.max_images, fid_reference_images=args.fid_reference_images,
                       batch_size=args.batch_size, save_images=False, grid_faces=0)
    return config


def run_metrics(args: argparse.Namespace, workdir: str) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = {w: run_metrics(args, w) for w in args.workdirs}
        paired = table_set(list(runs.values()), "paired", args.paired)
        real = table_set(list(runs.values()), "real", args.real)
        rows = []
        for workdir, metrics in runs.items():
            variants = tables.variant_rows(inference.run_config(workdir), pathlib.Path(workdir).name)
            rows += [(name, {"net": net, "workdir": workdir, "metrics": metrics})
                     for name, net in variants if net in metrics["nets"]]
        table = tables.ablation_table(rows, paired, real)
    except (checkpointing.CheckpointError, config_checks.ConfigError, DataError, MissingWeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(table)
    if args.output:
        args.output.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
