"""The paper's recipe as one command: train both stages, evaluate, export, write W/results.md.

  python tools/reproduce.py --workdir W --config.data.hr_dir=DATA/HIGH --config.data.lr_dir=DATA/LOW \\
      --test_set celeba=DATA/test/celeba --test_set widerface=DATA/test/widerface \\
      [--config configs/teacher_student.py] [--config.teacher_student.epochs=20 ...] [--smoke]

The flags are the main job's (`python -m fsr_jax.main`): --config (default: the paper's),
--config.section.field=value overrides, --test_set NAME=FOLDER and --workdir.

1. Prepares the datasets and trains the config's stages into W (stage 1 DeNet, stage 2 TNet
   and SNet), as `python -m fsr_jax.main` does, timing each stage.
2. Evaluates the newest stage-2 checkpoint on the test sets (W/eval/<step>/: metrics.json,
   table.md, the SR faces, side-by-side grids), as `--config.mode=eval` does.
3. Exports TNet, SNet and the DeNet TNet trained on as float32 weights files
   W/export/<net>.msgpack (`python -m fsr_jax.export`) and checks that they load.
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

from absl import flags

from fsr_jax import cli, files

DEFAULT_CONFIG = cli.PAPER_CONFIG
SMOKE_CONFIG = cli.config_file("smoke")
# --smoke's evaluation settings (each unless given as --config.eval.<field>=...).
SMOKE_EVAL = {"max_images": 8, "fid_reference_images": 16, "batch_size": 8, "grid_faces": 8}
STATE_FILE = "reproduce.json"
RESULTS_FILE = "results.md"


def define_smoke(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("smoke", False, f"Tiny networks (configs/{SMOKE_CONFIG.name} unless --config), few "
                      f"steps, {SMOKE_EVAL['max_images']} faces per test set.", flag_values=fv)


def default_config(argv: list[str]) -> pathlib.Path:
    """The config file without --config: the smoke config with --smoke, else the paper's."""
    fv = flags.FlagValues()
    define_smoke(fv)
    try:
        fv(["reproduce.py", *argv], known_only=True)
    except flags.Error:
        return DEFAULT_CONFIG  # reported when all the flags are parsed
    return SMOKE_CONFIG if fv.smoke else DEFAULT_CONFIG


def define(fv: flags.FlagValues, argv: list[str]) -> None:
    cli.define_config(fv, argv, default_config(argv), "Config file (configs/*.py; default: the paper's, "
                      f"configs/{DEFAULT_CONFIG.name}, or with --smoke configs/{SMOKE_CONFIG.name}); "
                      "--config.section.field=value overrides a field, as for python -m fsr_jax.main.")
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, evaluation, exports, results.md.",
                        flag_values=fv)
    cli.define_test_sets(fv)
    define_smoke(fv)
    flags.mark_flag_as_required("workdir", flag_values=fv)


def config_arg(fv: flags.FlagValues) -> str:
    """The config file as a command names it: configs/<name>.py for the package's configs."""
    path = pathlib.Path(fv["config"].config_filename).resolve()
    return f"configs/{path.name}" if path.parent == DEFAULT_CONFIG.parent else str(path)


def build_config(fv: flags.FlagValues, argv: list[str]):
    """The config of the recipe: the file with its overrides and test sets, and --smoke's eval
    settings; plus the extra overrides that make the printed eval command equal."""
    from fsr_jax import data  # noqa: PLC0415

    config = fv.config
    data.add_test_sets(config.data, fv.test_set)
    overridden = {a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.")}
    eval_extra = []
    if fv.smoke:
        for key, value in SMOKE_EVAL.items():
            if f"eval.{key}" not in overridden:
                config.eval[key] = value
                eval_extra.append(f"--config.eval.{key}={value}")
    return config, eval_extra


def stage_total_steps(config, stage: str) -> int:
    """Steps a stage trains for, as training counts them (max_steps, else epochs x full batches
    in the HR set)."""
    from fsr_jax import stages  # noqa: PLC0415
    from fsr_jax.data import datasets  # noqa: PLC0415

    if config[stage].max_steps:
        return stages.total_steps(config, stages.get(stage), num_hr=0)
    faces = len(datasets.train_builders(config.data)[0].as_data_source("train"))
    return stages.total_steps(config, stages.get(stage), faces)


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
        files.write_text(self.state_path, json.dumps(self.state, indent=2))

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
        """{net: metadata} of the float32 exports of checkpoint `step` (TNet, SNet and the DeNet
        it holds), each loaded back against the config (W/export/<net>.msgpack)."""
        from fsr_jax import checkpointing, export, inference, weights_file  # noqa: PLC0415

        saved, _ = checkpointing.saved_networks(inference.stage_dir(self.workdir) / "checkpoints", step)
        start = time.perf_counter()
        exported = {}
        for net in (n for n in weights_file.NETS if n in saved):
            path = self.dir / "export" / f"{net}.msgpack"
            export.export(self.workdir, net, path, step, "float32")
            _, _, meta = weights_file.load_weights(path, self.config.model, self.config.data, net)
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
              f"python -m fsr_jax.super_resolve --weights {shlex.quote(str(recipe.dir / 'export' / 'snet.msgpack'))} "
              "--input faces/ --output out/", "```", ""]
    return "\n".join(lines)


def step_commands(argv: list[str], fv, eval_extra: list[str], exported_nets) -> dict:
    """{'recipe': this command, 'prepare', 'train', 'eval', 'export <net>': the equivalent commands}."""
    overrides = [a for a in argv if a.startswith("--config.")]
    tests = [f"--test_set={t}" for t in fv.test_set]
    base = ["--config", config_arg(fv), "--workdir", fv.workdir, *overrides]
    workdir = pathlib.Path(fv.workdir)
    commands = {"recipe": ["python", "tools/reproduce.py", *argv],
                "prepare": ["python", "-m", "fsr_jax.data.prepare", "--config", config_arg(fv), *overrides, *tests],
                "train": ["python", "-m", "fsr_jax.main", *base],
                "eval": ["python", "-m", "fsr_jax.main", *base, *tests, "--config.mode=eval", *eval_extra]}
    for net in exported_nets:
        commands[f"export {net}"] = ["python", "-m", "fsr_jax.export", "--workdir", fv.workdir, "--net", net,
                                     "--output", str(workdir / "export" / f"{net}.msgpack"), "--dtype", "float32"]
    return commands


def run(argv: list[str], fv: flags.FlagValues) -> int:
    """The recipe with the parsed flags `fv` of the command line `argv` (which the printed commands repeat)."""
    import jax  # noqa: PLC0415

    from fsr_jax import config_checks, progress  # noqa: PLC0415
    from fsr_jax.errors import FsrJaxError  # noqa: PLC0415
    from fsr_jax.stages.teacher_student import STAGE as TEACHER_STUDENT  # noqa: PLC0415

    progress.quiet_library_logs()
    try:
        config, eval_extra = build_config(fv, argv)
        if TEACHER_STUDENT.name not in config.stages:
            raise config_checks.ConfigError(f"the recipe evaluates TNet and SNet, which stage {TEACHER_STUDENT.name!r} "
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
    except FsrJaxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.devices()[0].platform})"
    commands = step_commands(argv, fv, eval_extra, exported)
    text = results_markdown(recipe, results, eval_folder, exported, commands, fv.smoke, device)
    files.write_text(recipe.dir / RESULTS_FILE, text)
    print(f"wrote {recipe.dir / RESULTS_FILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    given = list(sys.argv[1:] if argv is None else argv)
    return cli.run(define, lambda fv, _: run(given, fv), argv, config=default_config, info_logs=True)


if __name__ == "__main__":
    main()
