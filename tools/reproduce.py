"""The paper's recipe as one command: train both stages, evaluate, export, write W/results.md.

  python tools/reproduce.py --hr_dir DATA/HIGH --lr_dir DATA/LOW \\
      --test_set celeba=DATA/test/celeba --test_set widerface=DATA/test/widerface --workdir W \\
      [--config configs/teacher_student.py] [--config.stage2.epochs=20 ...] [--smoke]

1. Prepares the datasets and trains the config's stages into W (stage 1 DeNet, stage 2 TNet
   and SNet), as `python -m fsr_jax.main` does, timing each stage.
2. Evaluates the newest stage-2 checkpoint on the test sets (W/eval/<step>/: metrics.json,
   table.md, the SR faces, side-by-side grids), as `--config.mode=eval` does.
3. Exports TNet and SNet as float32 weights files W/export/tnet.msgpack, W/export/snet.msgpack
   (`python -m fsr_jax.export`) and checks that they load.
4. Writes W/results.md: Tables 1-2, the wall time of each stage, the exported files, links to
   the grids (which stay in W) and the commands.

Rerunning the same command continues: finished stages are skipped, an interrupted stage
resumes from its newest checkpoint (Ctrl-C / SIGTERM save one and stop the recipe), an
evaluation with the same settings is reused; wall times add up over the reruns
(W/reproduce.json). `--smoke` uses configs/smoke.py (unless --config is given) and evaluates
8 faces per test set: the whole recipe in a few minutes on a CPU, for checking the mechanics.
"""
from __future__ import annotations

import json
import pathlib
import shlex
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs/, fsr_jax/

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/teacher_student.py"
SMOKE_CONFIG = "configs/smoke.py"
# --smoke's evaluation settings (each unless given as --config.eval.<field>=...).
SMOKE_EVAL = {"max_images": 8, "fid_reference_images": 16, "batch_size": 8, "grid_faces": 8}
STATE_FILE = "reproduce.json"
RESULTS_FILE = "results.md"


def parse(argv: list[str]) -> flags.FlagValues:
    """Flags of the recipe from argv (without the program name), in their own FlagValues so that
    main() can run more than once in a process (tests). flags.Error or ValueError on bad flags."""
    given_config = any(a == "--config" or a.startswith("--config=") for a in argv)
    default = SMOKE_CONFIG if "--smoke" in argv and not given_config else DEFAULT_CONFIG
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", str(REPO / default), "Config file (configs/*.py); "
                                    "--config.section.field=value overrides a field.",
                                    flag_values=fv, lock_config=True, sys_argv=["reproduce.py", *argv])
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, evaluation, exports, results.md.",
                        flag_values=fv)
    flags.DEFINE_string("hr_dir", None, "HR training faces (SCGAN's HIGH/); with --lr_dir.", flag_values=fv)
    flags.DEFINE_string("lr_dir", None, "Real LR training faces (SCGAN's LOW/); with --hr_dir.", flag_values=fv)
    flags.DEFINE_multi_string("test_set", [], "NAME=FOLDER (LR/ and optionally HR/), repeatable.", flag_values=fv)
    flags.DEFINE_bool("smoke", False, f"Tiny networks ({SMOKE_CONFIG} unless --config), few steps, "
                      f"{SMOKE_EVAL['max_images']} faces per test set.", flag_values=fv)
    fv(["reproduce.py", *argv])
    if fv.workdir is None:
        raise ValueError("--workdir is required")
    return fv


def config_arg(fv: flags.FlagValues) -> str:
    """The config file as the user gave it (or the default), for printed commands."""
    path = pathlib.Path(fv["config"].config_filename)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def build_config(fv: flags.FlagValues, argv: list[str]):
    """The config of the recipe: the file with its overrides, the data folders and test sets,
    and --smoke's eval settings; plus the extra overrides that make the printed commands equal."""
    from fsr_jax import data  # noqa: PLC0415

    config = fv.config
    extra = []
    if fv.hr_dir is not None:
        config.data.hr_dir = fv.hr_dir
        extra.append(f"--config.data.hr_dir={fv.hr_dir}")
    if fv.lr_dir is not None:
        config.data.lr_dir = fv.lr_dir
        extra.append(f"--config.data.lr_dir={fv.lr_dir}")
    data.add_test_sets(config.data, fv.test_set)
    overridden = {a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.")}
    eval_extra = []
    if fv.smoke:
        for key, value in SMOKE_EVAL.items():
            if f"eval.{key}" not in overridden:
                config.eval[key] = value
                eval_extra.append(f"--config.eval.{key}={value}")
    return config, extra, eval_extra


def stage_total_steps(config, stage: str) -> int:
    """Steps a stage trains for: max_steps, else epochs x full batches in the HR set."""
    from fsr_jax.data import datasets  # noqa: PLC0415
    from fsr_jax.steps import STAGE1  # noqa: PLC0415

    cfg = config.stage1 if stage == STAGE1 else config.stage2
    if cfg.max_steps:
        return cfg.max_steps
    faces = len(datasets.train_builders(config.data)[0].as_data_source("train"))
    return cfg.epochs * (faces // cfg.batch_size)


def check_metric_weights() -> None:
    """MissingWeightsError (naming the install command) before any training, not after it."""
    from fsr_jax.metrics import weights  # noqa: PLC0415

    missing = [n for n in (weights.INCEPTION_FILE, weights.LPIPS_FILE, weights.NIQE_FILE)
               if not (weights.cache_dir() / n).is_file()]
    if missing:
        raise weights.MissingWeightsError(
            f"the metric weights {missing} are missing in {weights.cache_dir()}; obtain them with:\n"
            f"    {weights.INSTALL_COMMAND}")


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else (f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s")


class Recipe:
    """The recipe's steps over one workdir, recording wall times in W/reproduce.json."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir = config, workdir
        self.dir = pathlib.Path(workdir).expanduser()
        self.state_path = self.dir / STATE_FILE
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.state.setdefault("stages", {})

    def save_state(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(self.state, indent=2))

    def prepare(self) -> None:
        from fsr_jax import data  # noqa: PLC0415

        start = time.perf_counter()
        data.prepare_all(self.config.data)
        self.state["prepare_seconds"] = self.state.get("prepare_seconds", 0.0) + time.perf_counter() - start
        self.save_state()

    def train(self) -> bool:
        """Train every stage not finished yet; False when one stopped early (signal)."""
        from fsr_jax import checkpointing, train  # noqa: PLC0415

        for stage in self.config.stages:
            total = stage_total_steps(self.config, stage)
            folder = self.dir / stage / "checkpoints"
            before = checkpointing.latest_step(folder) or 0
            record = self.state["stages"].setdefault(stage, {"seconds": 0.0, "runs": 0})
            record["total_steps"] = total
            if before >= total:
                print(f"[{stage}] finished earlier (step {before} of {total})")
                continue
            start = time.perf_counter()
            stage_config = self.config.copy_and_resolve_references()
            stage_config.stages = (stage,)
            train.train_and_evaluate(stage_config, self.workdir)
            record["seconds"] += time.perf_counter() - start
            record["runs"] += 1
            record["steps"] = checkpointing.latest_step(folder) or 0
            self.save_state()
            if record["steps"] < total:
                print(f"[{stage}] stopped at step {record['steps']} of {total}; rerun the same command "
                      f"to continue")
                return False
        return True

    def evaluate(self) -> tuple[dict, pathlib.Path]:
        """(metrics, its folder) of the newest stage-2 checkpoint, reused when the settings match."""
        from fsr_jax import checkpointing, data, evaluate, inference  # noqa: PLC0415

        config = self.config.copy_and_resolve_references()
        config.mode = "eval"
        step = checkpointing.latest_step(inference.stage_dir(self.workdir) / "checkpoints")
        out = evaluate.eval_dir(self.workdir, step) if step is not None else None
        saved = out / "metrics.json" if out is not None else None
        if saved is not None and saved.is_file():
            metrics = json.loads(saved.read_text())
            wanted = json.loads(json.dumps(config.eval.to_dict(), default=list))
            if (metrics.get("eval") == wanted and metrics.get("step") == step
                    and set(data.test_set_names(config.data)) <= set(metrics["sets"])):
                print(f"reusing the evaluation in {out}")
                return metrics, out
        start = time.perf_counter()
        metrics = evaluate.evaluate(config, self.workdir)
        self.state["eval"] = {"seconds": time.perf_counter() - start, "step": metrics["step"]}
        self.save_state()
        return metrics, evaluate.eval_dir(self.workdir, metrics["step"])

    def export(self, step: int) -> dict[str, dict]:
        """{net: metadata} of the float32 exports of checkpoint `step`, each loaded back against
        the config (W/export/<net>.msgpack)."""
        from fsr_jax import checkpointing, export, inference  # noqa: PLC0415

        saved, _ = checkpointing.saved_networks(inference.stage_dir(self.workdir) / "checkpoints", step)
        start = time.perf_counter()
        exported = {}
        for net in (n for n in inference.SR_NETS if n in saved):
            path = self.dir / "export" / f"{net}.msgpack"
            export.export(self.workdir, net, path, step, "float32")
            _, _, meta = export.load_weights(path, self.config.model, self.config.data, net)
            exported[net] = dict(meta, file=f"export/{net}.msgpack", bytes=path.stat().st_size)
        self.state["export_seconds"] = time.perf_counter() - start
        self.save_state()
        return exported


def demote(markdown: str, levels: int = 2) -> str:
    """Markdown headings `levels` deeper (table.md's '# title' under results.md's sections)."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def results_markdown(recipe: Recipe, metrics: dict, eval_folder: pathlib.Path, exported: dict,
                     commands: dict[str, list[str]], smoke: bool, device: str) -> str:
    """W/results.md: what was run, the wall times, Tables 1-2, the grids, the exports, the commands."""
    config, state = recipe.config, recipe.state
    lines = ["# Reproduction: Tables 1 and 2", ""]
    if smoke:
        lines += ["**Smoke scale** (`--smoke`): tiny networks, few steps, few faces. It checks that the "
                  "recipe runs; its numbers say nothing about the paper's.", ""]
    data_desc = (f"HR faces `{config.data.hr_dir}`, real LR faces `{config.data.lr_dir}`"
                 if config.data.hr_dir else "the synthetic default faces (not photographs)")
    lines += [f"Trained on {data_desc}; stages {', '.join(config.stages)}; on {device}.", "",
              "## Wall time", "",
              "Each figure includes start-up, compilation and checkpointing; a stage resumed over "
              "several runs shows their sum.", "",
              "| step | wall time | |", "|---|---|---|",
              f"| data preparation | {duration(state.get('prepare_seconds', 0.0))} | |"]
    for stage in config.stages:
        rec = state["stages"].get(stage, {})
        lines.append(f"| training: {stage} | {duration(rec.get('seconds', 0.0))} | "
                     f"{rec.get('steps', rec.get('total_steps', 0))} steps, {rec.get('runs', 0)} run(s) |")
    ev = state.get("eval", {})
    faces = ", ".join(f"{name}: {s['n']} faces" for name, s in metrics["sets"].items())
    lines += [f"| evaluation (checkpoint {metrics['step']}) | {duration(ev.get('seconds', 0.0))} | {faces} |",
              f"| export | {duration(state.get('export_seconds', 0.0))} | {', '.join(exported)} |", "",
              "## Results", "", demote((eval_folder / "table.md").read_text()), ""]
    grids = sorted((eval_folder / "grids").glob("*_000.png"))
    if grids:
        lines += ["Side by side (LR | bicubic | TNet | SNet | HR where the set has it); every SR face "
                  f"is in `{eval_folder.relative_to(recipe.dir)}/images/`:", ""]
        for grid in grids:
            rel = grid.relative_to(recipe.dir)
            lines += [f"[{grid.stem}]({rel})", "", f"![{grid.stem}]({rel})", ""]
    lines += ["## Exported weights", "", "| net | file | parameters | checkpoint | dtype | size |",
              "|---|---|---|---|---|---|"]
    for net, meta in exported.items():
        lines.append(f"| {net} | [{meta['file']}]({meta['file']}) | {meta['parameters']:,} | {meta['step']} | "
                     f"{meta['dtype']} | {meta['bytes'] / 2**20:.2f} MiB |")
    lines += ["", "## Commands", "", "This recipe (rerun it to continue an interrupted run):", "",
              "```bash", shlex.join(commands["recipe"]), "```", "",
              "Its steps as separate commands, with the same settings:", "", "```bash"]
    lines += [shlex.join(c) for key, c in commands.items() if key != "recipe"]
    lines += ["```", "", "Super-resolve your faces with the exported SNet:", "", "```bash",
              f"python tools/super_resolve.py --weights {shlex.quote(str(recipe.dir / 'export' / 'snet.msgpack'))} "
              "--input faces/ --output out/", "```", ""]
    return "\n".join(lines)


def step_commands(argv: list[str], fv, extra: list[str], eval_extra: list[str], exported_nets) -> dict:
    """{'recipe': this command, 'train', 'eval', 'export <net>': the equivalent commands}."""
    overrides = [a for a in argv if a.startswith("--config.")]
    tests = [f"--test_set={t}" for t in fv.test_set]
    base = ["--config", config_arg(fv), "--workdir", fv.workdir, *overrides, *extra]
    workdir = pathlib.Path(fv.workdir)
    commands = {"recipe": ["python", "tools/reproduce.py", *argv],
                "train": ["python", "-m", "fsr_jax.main", *base],
                "eval": ["python", "-m", "fsr_jax.main", *base, *tests, "--config.mode=eval", *eval_extra]}
    for net in exported_nets:
        commands[f"export {net}"] = ["python", "-m", "fsr_jax.export", "--workdir", fv.workdir, "--net", net,
                                     "--output", str(workdir / "export" / f"{net}.msgpack"), "--dtype", "float32"]
    return commands


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    try:
        fv = parse(argv)
    except (flags.Error, ValueError) as err:
        print(f"error: {err}\n(see python tools/reproduce.py --help)", file=sys.stderr)
        return 2
    import jax  # noqa: PLC0415

    from fsr_jax import checkpointing, config_checks, metrics, observe, train  # noqa: PLC0415
    from fsr_jax.data.images import DataError  # noqa: PLC0415
    from fsr_jax.steps import STAGE2  # noqa: PLC0415

    observe.quiet_library_logs()
    try:
        config, extra, eval_extra = build_config(fv, argv)
        if STAGE2 not in config.stages:
            raise config_checks.ConfigError(f"the recipe evaluates TNet and SNet, which stage {STAGE2!r} "
                                            f"trains; the config's stages are {list(config.stages)}")
        config_checks.validate(config, fv.workdir, jax.device_count())
        config_checks.validate_eval(config)
        check_metric_weights()
        recipe = Recipe(config, fv.workdir)
        recipe.prepare()
        if not recipe.train():
            return 0
        results, eval_folder = recipe.evaluate()
        exported = recipe.export(results["step"])
    except (config_checks.ConfigError, train.NonFiniteLossError, checkpointing.CheckpointError,
            metrics.MissingWeightsError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.devices()[0].platform})"
    commands = step_commands(argv, fv, extra, eval_extra, exported)
    text = results_markdown(recipe, results, eval_folder, exported, commands, fv.smoke, device)
    (recipe.dir / RESULTS_FILE).write_text(text)
    print(f"wrote {recipe.dir / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    from absl import logging  # noqa: E402

    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)  # the progress lines of training, as the main job shows them
    sys.exit(main())
