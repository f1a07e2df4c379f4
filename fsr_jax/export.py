"""Weights a user can take away: one small file per trained network (TNet, SNet or DeNet).

  python -m fsr_jax.export --workdir W --net snet --output snet.msgpack [--step N] [--dtype float16]
  python -m fsr_jax.export --weights snet.msgpack --output snet_fp16.msgpack --dtype float16

The file (`fsr_jax.weights_file`) is what `python -m fsr_jax.super_resolve --weights` and
`--config.eval.weights` read. TNet and SNet come from W/teacher_student's checkpoints; DeNet from
the stage-2 checkpoint that took it (frozen) or, for a run without stage 2, W/degradation's.
`--weights` re-stores an exported file in another dtype (the metadata kept).
"""
from __future__ import annotations

import pathlib
import sys

from absl import flags

from fsr_jax import cli, inference, weights_file
from fsr_jax.errors import FsrJaxError
from fsr_jax.weights_file import NETS, STORAGE_DTYPES


def export(workdir: str | pathlib.Path, net: str, output: str | pathlib.Path, step: int | None = None,
           dtype: str = "float32") -> dict:
    """Export `net` of a trained run to `output` with the run's config; return the metadata.

    TNet and SNet: checkpoint `step` (default: the newest) of W/teacher_student. DeNet: the one
    that checkpoint holds, else the newest of W/degradation (`inference.load_trained_denet`).
    CheckpointError names a missing checkpoint."""
    if net == "denet":
        denet = inference.load_trained_denet(workdir, step)
        return weights_file.save_weights(output, net, denet.params, denet.meta["model"], denet.meta["data"],
                                         denet.step, dtype)
    params, step = inference.load_sr_networks(workdir, (net,), step)
    run = inference.run_config(workdir)
    return weights_file.save_weights(output, net, params[net], run.model, run.data, step, dtype)


def restore(source: str | pathlib.Path, output: str | pathlib.Path, dtype: str) -> dict:
    """Re-store the weights file `source` in `dtype` at `output` (net, step and config kept)."""
    _, params, meta = weights_file.load_weights(source)
    return weights_file.save_weights(output, meta["net"], params, meta["model"], meta["data"], meta["step"], dtype)


def define(fv: flags.FlagValues, argv) -> None:
    del argv
    flags.DEFINE_string("workdir", None, "A trained run (its checkpoints).", flag_values=fv)
    flags.DEFINE_string("weights", None, "An exported weights file to store again in --dtype (instead of "
                        "--workdir).", flag_values=fv)
    flags.DEFINE_enum("net", "snet", tuple(NETS), "The network to export (with --workdir).", flag_values=fv)
    flags.DEFINE_string("output", None, "The weights file to write, e.g. snet.msgpack.", flag_values=fv)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", tuple(STORAGE_DTYPES),
                      "Storage dtype (float16: half the size; loaded as float32).", flag_values=fv)
    flags.mark_flags_as_required(["output"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["workdir", "weights"], required=True, flag_values=fv)


def run(fv: flags.FlagValues, args: list[str]) -> int:
    del args
    output = pathlib.Path(fv.output).expanduser()
    try:
        if fv.weights:
            meta = restore(fv.weights, output, fv.dtype)
        else:
            meta = export(fv.workdir, fv.net, output, fv.step, fv.dtype)
    except (FsrJaxError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {fv.output}: {meta['net']} of {fv.workdir or fv.weights} (checkpoint {meta['step']}), "
          f"{meta['parameters']:,} parameters in {meta['dtype']}, {output.stat().st_size / 2**20:.2f} MiB")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` (the arguments after the program name) runs it in this process."""
    return cli.run(define, run, argv)


if __name__ == "__main__":
    main()
