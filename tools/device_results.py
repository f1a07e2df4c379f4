"""The results run: the paper's recipe trained on real faces in one GPU call, evaluated here.

    python tools/device_results.py train --faces bench/faces --output $OUT [--small] [--budget_s 480]
    python tools/device_results.py report --parts DIR --workdir W --test_set celeba=F/test/celeba \\
        --test_set widerface=F/test/widerface --config.data.hr_dir=F/train/HIGH --config.data.lr_dir=F/train/LOW

`train` (on the GPU machine, through tools/device_results.sh) runs from a folder of faces laid
out as the shared set (train/HIGH, train/LOW, test/celeba/HR, test/widerface/LR):

1. prepares the training faces and trains stage 1 with the paper's config at the fastest
   settings the benchmark found (`--steps_per_call`; float32 unless `--dtype`);
2. measures DeNet as a model of real LR on the held-out faces (`fsr_jax.degradation_report`,
   without the Frechet distance, whose Inception weights stay off the GPU machine); where
   DeNet shows flaws against bicubic (speckle, a colour shift, values out of range), trains
   stage 1 again with each remedy of `REMEDIES` that the time budget allows and keeps the
   DeNet with the smallest realism gap (**Decision**: the gap decides, and the report shows
   every candidate);
3. trains stage 2 on that DeNet and exports TNet, SNet and DeNet (float32);
4. with time left, the Table 3 variants (`VARIANTS`), each exported (float16).

Everything lands in `--output` as it is finished, at most 8 files of at most 16 MiB (what a
device call brings back): results.json (rewritten after every step: wall times, DeNet's
statistics per candidate, the choice, what was skipped), tnet.msgpack, snet.msgpack,
stage1.tar (DeNet's weights, each candidate's metrics.jsonl and last image grid), stage2.tar
(metrics.jsonl, last grids) and variants.tar. A run cut off keeps every finished step; a stage
stopped by the time limit saves a checkpoint, and what it trained so far is exported and
marked unfinished.

`report` (here, where the metric weights are) unpacks those files into W, evaluates the exported
networks on the test sets with the DeNet report (`--config.eval.weights`), the variants as
Table 3, and writes W/results.md with the tables, the wall times and the commands.
"""
from __future__ import annotations

import importlib
import json
import pathlib
import platform
import shlex
import shutil
import sys
import tarfile
import time
from typing import Any

from absl import flags

from fsr_jax import cli, files

#: Stage-1 remedies, tried in this order while the budget allows when the paper's DeNet shows
#: flaws: config overrides, each with the paper's behaviour as the field's default.
REMEDIES = {
    "clip+skip+slow_d": {"degradation.clip_for_discriminator": True, "model.downsampler.bicubic_skip": True,
                         "degradation.discriminator_lr_scale": 0.1},
    "clip": {"degradation.clip_for_discriminator": True},
    "skip": {"model.downsampler.bicubic_skip": True},
    "slow_d": {"degradation.discriminator_lr_scale": 0.1},
}
#: Table 3's variants: config module -> what it changes (on top of the chosen DeNet).
VARIANTS = ("baseline", "canny", "no_cycle", "cycle_teacher", "bicubic_pairs")
#: --small: the rehearsal's sizes (the smoke config's networks, a few steps).
SMALL = {"model.sr.features": 8, "model.sr.groups": 1, "model.downsampler.features": 8,
         "model.downsampler.blocks": 1, "model.discriminator.width": 0.125, "degradation.max_steps": 6,
         "teacher_student.max_steps": 6, "train.log_every": 2, "train.images_every": 3, "train.checkpoint_every": 3}
#: The held-out faces DeNet is measured on, under --faces.
HELD_OUT_HR, HELD_OUT_REAL = "test/celeba/HR", "test/widerface/LR"
PART_LIMIT = 16 * 2**20
STAGES = ("degradation", "teacher_student")


def apply(config, overrides: dict[str, Any]) -> None:
    """Set dotted config fields ('degradation.epochs') to values."""
    for field, value in overrides.items():
        *parents, leaf = field.split(".")
        section = config
        for name in parents:
            section = section[name]
        section[leaf] = value


def build_config(module: str, small: bool, overrides: dict[str, Any]):
    """configs/<module>.py with --small's sizes (when `small`) and `overrides`."""
    config = importlib.import_module(f"configs.{module}").get_config()
    if small:
        apply(config, SMALL)
    apply(config, overrides)
    return config


def model_fields(overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that change the networks (what evaluation must build alike)."""
    return {k: v for k, v in overrides.items() if k.startswith("model.")}


class Output:
    """The output folder: results.json rewritten after every step, files packed as they come."""

    def __init__(self, folder: pathlib.Path, results: dict):
        self.folder, self.results = folder, results
        folder.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        files.write_text(self.folder / "results.json", json.dumps(self.results, indent=2, default=str))

    def copy(self, source: pathlib.Path, name: str) -> None:
        """A file of at most 16 MiB, as `name`."""
        if source.stat().st_size > PART_LIMIT:
            raise ValueError(f"{source} is over {PART_LIMIT} bytes; store it in float16")
        with files.open_atomic(self.folder / name) as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out)

    def pack(self, name: str, members: dict[str, pathlib.Path]) -> None:
        """name.tar of {path in the archive: file} (existing files only), at most 16 MiB."""
        with files.open_atomic(self.folder / name) as out:
            with tarfile.open(fileobj=out, mode="w") as tar:
                for arcname, path in members.items():
                    if path.is_file():
                        tar.add(path, arcname)
            if out.tell() > PART_LIMIT:  # nothing is written
                raise ValueError(f"{name} would be over {PART_LIMIT} bytes")


def stage_files(workdir: pathlib.Path, prefix: str) -> dict[str, pathlib.Path]:
    """Each stage's metrics.jsonl, config.json and newest image grids, under `prefix`/."""
    found = {}
    for stage in STAGES:
        folder = workdir / stage
        found[f"{prefix}/{stage}/metrics.jsonl"] = folder / "metrics.jsonl"
        found[f"{prefix}/{stage}/config.json"] = folder / "config.json"
        grids = sorted((folder / "images").glob("*.png")) if (folder / "images").is_dir() else []
        newest = {}
        for grid in grids:  # <net>_<step>.png: the newest of each net
            newest[grid.stem.rsplit("_", 1)[0]] = grid
        found.update({f"{prefix}/{stage}/images/{g.name}": g for g in newest.values()})
    return found


class Run:
    """The `train` subcommand's steps over one scratch folder, timed against a budget."""

    def __init__(self, fv: flags.FlagValues):
        self.fv = fv
        self.start = time.perf_counter()
        self.scratch = pathlib.Path(fv.scratch).expanduser()
        self.faces = pathlib.Path(fv.faces).expanduser()

    def left(self) -> float:
        return self.fv.budget_s - (time.perf_counter() - self.start)

    def config(self, module: str, overrides: dict[str, Any], stages: tuple[str, ...]):
        """configs/<module>.py for this run: the faces, the speed settings, `overrides`, `stages`."""
        config = build_config(module, self.fv.small, overrides)
        config.data.update(hr_dir=str(self.faces / "train" / "HIGH"), lr_dir=str(self.faces / "train" / "LOW"),
                           tfds_dir=str(self.scratch / "tfds"))
        config.model.dtype = self.fv.dtype
        config.train.steps_per_call = self.fv.steps_per_call
        config.stages = stages
        return config

    def train(self, config, workdir: pathlib.Path) -> dict:
        """Train `config` into `workdir`; {seconds, steps, total_steps, finished} of its last stage."""
        from fsr_jax import checkpointing, stages, train  # noqa: PLC0415
        from fsr_jax.data import datasets  # noqa: PLC0415

        started = time.perf_counter()
        train.train_and_evaluate(config, str(workdir))
        stage = config.stages[-1]
        num_hr = len(datasets.train_builders(config.data)[0].as_data_source("train"))
        total = stages.total_steps(config, stages.get(stage), num_hr)
        steps = checkpointing.latest_step(workdir / stage / "checkpoints") or 0
        return {"seconds": round(time.perf_counter() - started, 1), "steps": steps, "total_steps": total,
                "finished": steps >= total}

    def held_out(self) -> tuple:
        """uint8 held-out HR faces (64x64) and real LR faces (16x16) of --faces."""
        from fsr_jax import inference  # noqa: PLC0415

        def read(sub: str, size: int):
            return inference.read_face_files(inference.image_paths(self.faces / sub), size).faces

        return read(HELD_OUT_HR, 64), read(HELD_OUT_REAL, 16)


def denet_report(workdir: pathlib.Path, hr, real) -> dict:
    """`degradation_report.report` of the DeNet in `workdir` (no Frechet distance)."""
    from fsr_jax import degradation_report, inference  # noqa: PLC0415

    denet = inference.load_trained_denet(workdir)
    return degradation_report.report(hr, real, degradation_report.denet_lr(denet.model, denet.params, hr))


def train_command(fv: flags.FlagValues) -> int:
    import jax  # noqa: PLC0415

    from fsr_jax import data, export  # noqa: PLC0415

    run = Run(fv)
    device = jax.devices()[0]
    out = Output(pathlib.Path(fv.output).expanduser(), {
        "device": f"{jax.device_count()} x {device.device_kind} ({device.platform})", "jax": jax.__version__,
        "host": platform.node(), "budget_s": fv.budget_s, "small": fv.small, "dtype": fv.dtype,
        "steps_per_call": fv.steps_per_call, "wall_seconds": {}, "stage1": {}, "skipped": []})
    results, wall = out.results, out.results["wall_seconds"]

    def timed(name, fn):
        started = time.perf_counter()
        value = fn()
        wall[name] = round(time.perf_counter() - started, 1)
        out.save()
        return value

    timed("prepare", lambda: data.prepare_all(run.config("teacher_student", {}, STAGES).data))
    hr, real = run.held_out()

    # Stage 1: the paper's, then the remedies while its DeNet shows flaws and time allows.
    stage1_files: dict[str, pathlib.Path] = {}
    for name, overrides in [("paper", {}), *((n, REMEDIES[n]) for n in fv.remedies)]:
        if name != "paper":
            paper = results["stage1"]["paper"]
            reserve = fv.stage2_reserve_s + paper["training"]["seconds"]
            if not paper["flaws"]:
                break
            if run.left() < reserve:
                results["skipped"].append(f"stage-1 remedy {name}: {run.left():.0f} s left, {reserve:.0f} s needed")
                continue
        workdir = run.scratch / "stage1" / name
        config = run.config("teacher_student", overrides, ("degradation",))
        training = timed(f"stage1 {name}", lambda: run.train(config, workdir))
        report = denet_report(workdir, hr, real)
        results["stage1"][name] = {"overrides": overrides, "training": training, **report,
                                   "realism_gap": report["rows"]["denet"]["realism_gap"]}
        stage1_files.update(stage_files(workdir, f"stage1/{name}"))
        out.save()
        out.pack("stage1.tar", stage1_files)
        if not training["finished"]:
            break
    chosen = min(results["stage1"], key=lambda n: results["stage1"][n]["realism_gap"])
    results["chosen_denet"] = chosen
    home = run.scratch / "stage1" / chosen  # stage 2 trains beside its stage 1, whose W/degradation holds DeNet
    export.export(home, "denet", run.scratch / "denet.msgpack")
    out.pack("stage1.tar", {**stage1_files, "denet.msgpack": run.scratch / "denet.msgpack"})
    out.save()
    if not results["stage1"][chosen]["training"]["finished"]:
        return 0

    # Stage 2 on the chosen DeNet, exported.
    remedy = {"paper": {}, **REMEDIES}[chosen]
    config = run.config("teacher_student", remedy, ("teacher_student",))
    results["stage2"] = timed("stage2", lambda: run.train(config, home))
    for net in ("tnet", "snet"):
        export.export(home, net, run.scratch / f"{net}.msgpack")
        out.copy(run.scratch / f"{net}.msgpack", f"{net}.msgpack")
    out.pack("stage2.tar", stage_files(home, "paper"))
    out.save()
    if not results["stage2"]["finished"]:
        return 0

    # The Table 3 variants, each a stage 2 of its own on the same DeNet, while time allows.
    variant_files, results["variants"] = {}, {}
    needed = results["stage2"]["seconds"] * 1.1
    for variant in fv.variants:
        if run.left() < needed:
            results["skipped"].append(f"variant {variant}: {run.left():.0f} s left, about {needed:.0f} s needed")
            continue
        workdir = run.scratch / "variants" / variant
        config = run.config(variant, dict(remedy, **{"teacher_student.denet_checkpoint": str(home)}), ("teacher_student",))
        results["variants"][variant] = timed(f"variant {variant}", lambda: run.train(config, workdir))
        for net in ("tnet", "snet"):
            path = run.scratch / "variants" / f"{variant}_{net}.msgpack"
            try:
                export.export(workdir, net, path, dtype="float16")
            except Exception as err:  # noqa: BLE001 (a variant without SNet: cycle_teacher)
                results["variants"][variant][f"{net}_export"] = str(err)
            variant_files[f"variants/{variant}_{net}.msgpack"] = path
        variant_files.update(stage_files(workdir, f"variants/{variant}"))
        out.pack("variants.tar", variant_files)
        out.save()
        if not results["variants"][variant]["finished"]:
            break
    wall["total"] = round(time.perf_counter() - run.start, 1)
    out.save()
    return 0


def report_command(fv: flags.FlagValues, argv: list[str]) -> int:
    """Unpack the device run's files into W/device, evaluate them here, write W/results.md."""
    from fsr_jax import data, evaluate, tables  # noqa: PLC0415

    parts, workdir = pathlib.Path(fv.parts).expanduser(), pathlib.Path(fv.workdir).expanduser()
    unpacked = workdir / "device"
    unpacked.mkdir(parents=True, exist_ok=True)
    for tar in sorted(parts.glob("*.tar")):
        with tarfile.open(tar) as archive:
            archive.extractall(unpacked, filter="data")
    for name in ("results.json", "tnet.msgpack", "snet.msgpack"):
        if (parts / name).is_file():
            shutil.copyfile(parts / name, unpacked / name)
    device = json.loads((unpacked / "results.json").read_text())
    remedy = model_fields({"paper": {}, **REMEDIES}.get(device.get("chosen_denet"), {}))
    config = fv.config
    data.add_test_sets(config.data, fv.test_set)
    config.model = build_config("teacher_student", device["small"], remedy).model
    config.eval.weights = ",".join(str(unpacked / f"{n}.msgpack") for n in ("tnet", "snet", "denet")
                                   if (unpacked / f"{n}.msgpack").is_file())
    main_results = evaluate.evaluate(config, str(workdir))
    rows = [(row, {"net": net, "workdir": "paper", "metrics": main_results}) for row, net in
            tables.variant_rows(build_config("teacher_student", device["small"], remedy), "paper")]
    for variant in device.get("variants", {}):
        weights = [unpacked / "variants" / f"{variant}_{n}.msgpack" for n in ("tnet", "snet")]
        if not any(f.is_file() for f in weights):
            continue
        run_config = build_config(variant, device["small"], remedy)
        variant_eval = config.copy_and_resolve_references()
        variant_eval.model = run_config.model
        variant_eval.eval.update(weights=",".join(str(f) for f in weights if f.is_file()), nets=("tnet", "snet"))
        scores = evaluate.evaluate(variant_eval, str(workdir / "variants" / variant))
        rows += [(row, {"net": net, "workdir": variant, "metrics": scores})
                 for row, net in tables.variant_rows(run_config, variant)]
    table = evaluate.eval_dir(workdir, main_results["folder"]) / "table.md"
    files.write_text(workdir / "results.md", results_markdown(device, main_results, table, rows, argv))
    print(f"wrote {workdir / 'results.md'}")
    return 0


def results_markdown(device: dict, results: dict, table: pathlib.Path, rows: list, argv: list[str]) -> str:
    """W/results.md: the device run (wall times, DeNet candidates), Tables 1-2, Table 3, commands."""
    from fsr_jax import tables  # noqa: PLC0415

    lines = ["# Results: the paper's recipe on the shared faces", "",
             f"Trained on {device['device']} (jax {device['jax']}, {device['dtype']}, "
             f"{device['steps_per_call']} steps per call){' at rehearsal size (--small)' if device['small'] else ''}; "
             "evaluated on this machine from the exported weights.", "", "## Wall times on the device", "",
             "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds} |" for name, seconds in device["wall_seconds"].items()]
    lines += ["", "## Stage 1: the DeNet candidates (held-out faces, without Fréchet distance)", "",
              "| candidate | overrides | steps | realism gap ↓ | flaws |", "|---|---|---|---|---|"]
    for name, cand in device["stage1"].items():
        lines.append(f"| {name}{' (chosen)' if name == device.get('chosen_denet') else ''} | "
                     f"{cand['overrides'] or 'the paper'} | {cand['training']['steps']} / "
                     f"{cand['training']['total_steps']} | {cand['realism_gap']:.3f} | "
                     f"{', '.join(cand['flaws']) or 'none'} |")
    if device.get("skipped"):
        lines += ["", "Skipped for time: " + "; ".join(device["skipped"]) + "."]
    lines += ["", "## Tables 1-2 and the DeNet report", "", table.read_text()]
    if len(rows) > 3:  # the variants beside the paper's rows
        paired = next(n for n, s in results["sets"].items() if s["kind"] == "paired")
        real = next(n for n, s in results["sets"].items() if s["kind"] == "real")
        lines += ["## Table 3", "", tables.ablation_table(rows, paired, real)]
    lines += ["## Commands", "", "```bash", "python tools/device_results.py " + shlex.join(argv), "```", ""]
    return "\n".join(lines)


SUBCOMMANDS = ("train", "report")


def define(fv: flags.FlagValues, argv) -> None:
    command = cli.subcommand(argv, SUBCOMMANDS)
    if command == "report":
        cli.define_config(fv, argv)
        flags.DEFINE_string("parts", None, "The files the device run wrote.", flag_values=fv)
        flags.DEFINE_string("workdir", None, "Where they are unpacked and evaluated.", flag_values=fv)
        cli.define_test_sets(fv)
        flags.mark_flags_as_required(["parts", "workdir"], flag_values=fv)
        return
    if command != "train":
        raise cli.FlagsError(f"the first argument must be a subcommand, one of {SUBCOMMANDS}")
    flags.DEFINE_string("faces", "bench/faces", "Faces: train/HIGH, train/LOW, test/celeba/HR, test/widerface/LR.",
                        flag_values=fv)
    flags.DEFINE_string("output", None, "Where the results go (the device call's $OUT).", flag_values=fv)
    flags.DEFINE_string("scratch", "/tmp/fsr_results", "Workdirs, prepared data and caches (not brought back).",
                        flag_values=fv)
    flags.DEFINE_float("budget_s", 480.0, "Seconds the whole run may take; optional steps are skipped to fit.",
                       flag_values=fv)
    flags.DEFINE_float("stage2_reserve_s", 360.0, "Seconds kept for stage 2 when deciding whether a stage-1 "
                       "remedy fits (one H200: about 250 s of steps and 75 s of compilation).", flag_values=fv)
    flags.DEFINE_integer("steps_per_call", 16, "Training steps per jitted call (the benchmark's best on a GPU).",
                         flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"), "Computation dtype.", flag_values=fv)
    flags.DEFINE_bool("small", False, "Rehearsal: tiny networks, a few steps.", flag_values=fv)
    flags.DEFINE_list("remedies", list(REMEDIES), f"Stage-1 remedies to try, in order, when the paper's DeNet "
                      f"shows flaws (some of {', '.join(REMEDIES)}; empty: none).", flag_values=fv)
    flags.DEFINE_list("variants", list(VARIANTS), f"Table 3 variants to train, in order, with the time left "
                      f"(some of {', '.join(VARIANTS)}; empty: none).", flag_values=fv)
    for name, known in (("remedies", REMEDIES), ("variants", VARIANTS)):
        flags.register_validator(name, lambda given, known=known: set(given) <= set(known),
                                 f"--{name} takes some of {', '.join(known)}", flag_values=fv)
    flags.mark_flag_as_required("output", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    given = list(sys.argv[1:] if argv is None else argv)

    def run(fv: flags.FlagValues, args: list[str]) -> int:
        return train_command(fv) if args[0] == "train" else report_command(fv, given)

    return cli.run(define, run, argv, positional=True, info_logs=True,
                   config=lambda args: cli.PAPER_CONFIG if cli.subcommand(args, SUBCOMMANDS) == "report" else None)


if __name__ == "__main__":
    main()
