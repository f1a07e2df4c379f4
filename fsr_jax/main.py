"""Main job: `python -m fsr_jax.main --config configs/teacher_student.py --workdir W`.

Trains the configured stages (resuming from the newest checkpoints) or, with
`--config.mode=eval`, evaluates them. Multi-process: pass --coordinator_address,
--num_processes and --process_id (or --distributed where JAX finds them itself, as on Cloud
TPU and SLURM).
"""
from __future__ import annotations

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: checkpoints, summaries, evaluations.")
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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    initialize_distributed()
    from fsr_jax import observe  # noqa: PLC0415

    observe.quiet_library_logs()
    logging.info("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count(),
                 jax.devices()[0].platform)
    from fsr_jax import config_checks, train  # noqa: PLC0415 (after distributed init)

    config = _CONFIG.value
    try:
        if config.mode == "eval":
            from fsr_jax import evaluate  # noqa: PLC0415
            evaluate.evaluate(config, _WORKDIR.value)
        else:
            train.train_and_evaluate(config, _WORKDIR.value)
    except (config_checks.ConfigError, train.NonFiniteLossError) as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
