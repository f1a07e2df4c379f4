"""Main job: `python -m fsr_jax.main --config configs/teacher_student.py --workdir W`.

Trains the configured stages (resuming from the newest checkpoints) or, with
`--config.mode=eval`, evaluates them (W/eval/<step>/); `--test_set=NAME=FOLDER` (repeatable)
adds test sets. Multi-process: pass --coordinator_address,
--num_processes and --process_id (or --distributed where JAX finds them itself, as on Cloud
TPU and SLURM).
"""
from __future__ import annotations

import ast
import importlib.util
import os
import pathlib
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from fsr_jax import cli
from fsr_jax.stopping import StoppedBeforeTraining, Stopper



def configs_help() -> str:
    """The configs shipped in the `configs` package, one line each (their docstrings' first lines)."""
    spec = importlib.util.find_spec("configs")
    lines = []
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for path in sorted(pathlib.Path(folder).glob("[!_]*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            lines.append(f"  configs/{path.name:<22} {doc.splitlines()[0] if doc else ''}")
    return "\nConfigs (--config configs/NAME.py, then --config.SECTION.FIELD=VALUE to override):\n" + "\n".join(lines) + "\n"


__doc__ += configs_help()

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: checkpoints, summaries, evaluations.")
_TEST_SETS = cli.define_test_sets(
    flags.FLAGS, "NAME=FOLDER (a folder with LR/ and optionally HR/), repeated: test sets added "
    "to config.data.test_sets, which the locked config cannot take from --config flags.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() with auto-detected settings.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed() -> None:
    """jax.distributed.initialize() when launched multi-process; nothing for one process.

    CPU processes exchange gradients over gloo (other platforms ignore the setting).
    """
    if _COORDINATOR.value is None and not _DISTRIBUTED.value:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if _COORDINATOR.value is not None:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()


def enable_compilation_cache(folder: str) -> None:
    """JAX's persistent compilation cache in `folder` (~ expanded); '' leaves it off, and a cache
    folder already given to JAX (JAX_COMPILATION_CACHE_DIR) is kept."""
    if folder and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


#: The process's signal handling, installed before the flags are parsed (the config file's
#: imports take seconds): a signal before training ends the job with one line.
_STOP = Stopper()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    initialize_distributed()
    from fsr_jax import progress  # noqa: PLC0415

    progress.quiet_library_logs()
    logging.info("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count(),
                 jax.devices()[0].platform)
    from fsr_jax import config_upgrade, data, train  # noqa: PLC0415 (after distributed init)
    from fsr_jax.errors import FsrJaxError  # noqa: PLC0415

    config = _CONFIG.value
    if config_upgrade.old_names(config):
        logging.warning("config sections %s are read as %s (their names today)",
                        ", ".join(config_upgrade.old_names(config)),
                        ", ".join(config_upgrade.RENAMED_SECTIONS[n] for n in config_upgrade.old_names(config)))
        config = config_upgrade.upgrade(config)
        config.lock()
    enable_compilation_cache(config.train.get("compilation_cache", ""))
    try:
        data.add_test_sets(config.data, _TEST_SETS.value)
        if config.mode == "eval":
            from fsr_jax import evaluate  # noqa: PLC0415
            _STOP.during = "evaluation"
            evaluate.evaluate(config, _WORKDIR.value)
        else:
            train.train_and_evaluate(config, _WORKDIR.value, _STOP)
    except FsrJaxError as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, where a bad flag or `--config.*` override (unknown field, wrong type)
    stops the job with absl's one-line message, as every fsr_jax command does."""
    try:
        return cli.parse_into(flags.FLAGS, argv)
    except cli.FlagsError as err:
        cli.report_flags_error(str(err))
        sys.exit(1)


def run() -> None:
    """`python -m fsr_jax.main`: absl's app.run with signals handled from the start. A signal
    outside the training loop ends the job with exit status 128 + the signal, also when the
    call it interrupted then failed in its own way (named in the same line)."""
    with _STOP:
        try:
            app.run(main, flags_parser=parse_flags)
        except (Exception, StoppedBeforeTraining, SystemExit) as err:
            if not _STOP.outside_loop or (isinstance(err, SystemExit) and not err.code):
                raise
            print(f"stopped: {_STOP.message()}{interrupted_call(err)}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            # Not sys.exit: a compilation may still run on a helper thread (Stopper.wait), and the
            # interpreter's shutdown aborts the process under it. Nothing is left to write:
            # checkpoints are written synchronously and a stage's summaries closed when it ends.
            os._exit(128 + _STOP.signal)


def interrupted_call(err: BaseException) -> str:
    """'' for the stop itself (or an exit already reported), else what the interrupted call
    raised, in one clause of at most about 200 characters."""
    if isinstance(err, (StoppedBeforeTraining, SystemExit)):
        return ""
    first_line = (str(err).strip().splitlines() or [""])[0][:200]
    return f" (the interrupted call then raised {type(err).__name__}: {first_line})"


if __name__ == "__main__":
    run()
