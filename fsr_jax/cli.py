"""One command-line style for every fsr_jax command, the main job's: absl flags.

Flag names are snake_case, booleans are `--flag` / `--noflag`, `--help` (or `--helpshort`)
shows the command's docstring and flags and `--helpfull` every flag; a config is `--config FILE`
with `--config.section.field=value` overrides (ml_collections); a test set is
`--test_set NAME=FOLDER`, repeatable. A wrong flag stops the command with absl's message
(`FATAL Flags parsing error: Unknown command line flag 'no-resize'`) and exit status 1.

A command defines its flags in a function `define(flag_values, argv)`, does its work in
`run(flag_values, args) -> exit status` (`args`: the positional arguments), and runs as

    def main(argv=None):
        return cli.run(define, run, argv, config=cli.PAPER_CONFIG)  # config: if it takes --config

    if __name__ == "__main__":
        main()

From a shell (`argv` None) this is `absl.app.run` on absl's global FLAGS, so the help flags and
absl's logging flags work as in `python -m fsr_jax.main`. Given `argv` (tests, other code) it
parses into a fresh `FlagValues`, so a command can run many times in one process, and returns
the exit status instead of exiting.
"""
from __future__ import annotations

import pathlib
import sys
import textwrap
from typing import Callable, Sequence, Union

from absl import app, flags, logging
from ml_collections import config_flags

import configs
from fsr_jax.data.config import parse_test_sets

# Flags defined by the helpers below belong to the command that calls them (in its --helpshort).
flags.disclaim_key_flags()

#: The paper's config, the default of every command that takes --config.
PAPER_CONFIG = pathlib.Path(configs.__file__).resolve().parent / "teacher_student.py"

Define = Callable[[flags.FlagValues, Sequence[str]], None]
Main = Callable[[flags.FlagValues, list[str]], "int | None"]


def config_file(name: str) -> pathlib.Path:
    """The installed configs/<name>.py."""
    return PAPER_CONFIG.with_name(f"{name}.py")


def define_config(fv: flags.FlagValues, argv: Sequence[str], default: str | pathlib.Path | None = PAPER_CONFIG,
                  help_string: str | None = None) -> flags.FlagHolder:
    """--config FILE with its --config.section.field=value overrides, locked as the main job
    locks it (an unknown field or a wrong type is refused). `argv`: the arguments after the
    program name, in which the overrides are looked for; `default` is shown in the help and
    must be the `config` that `run` is given."""
    if help_string is None:
        help_string = ("Config file (configs/*.py; default: the paper's, configs/teacher_student.py); "
                       "--config.section.field=value overrides a field, as for python -m fsr_jax.main.")
    return config_flags.DEFINE_config_file("config", None if default is None else str(default), help_string,
                                           flag_values=fv, lock_config=True, sys_argv=["", *argv])


def _valid_test_sets(specs: list[str]) -> bool:
    try:
        parse_test_sets(specs)
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None
    return True


def define_test_sets(fv: flags.FlagValues, help_string: str | None = None) -> flags.FlagHolder:
    """--test_set NAME=FOLDER, repeatable: a folder with LR/ and optionally HR/ (checked at parse)."""
    holder = flags.DEFINE_multi_string(
        "test_set", [], help_string or "NAME=FOLDER (a folder with LR/ and optionally HR/), repeatable: "
        "test sets added to config.data.test_sets.", flag_values=fv)
    flags.register_validator("test_set", _valid_test_sets, flag_values=fv)
    return holder


def subcommand(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """The subcommand: the first argument that is not a flag, when it is one of `names`."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in names else None


def report_flags_error(message: str) -> None:
    """absl.app's message for flags that cannot be parsed."""
    message = "\n" + textwrap.indent(message, "  ") if "\n" in message else f" {message}"
    sys.stderr.write(f"FATAL Flags parsing error:{message}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")


class FlagsError(flags.Error):
    """Flags that cannot be parsed; the message is absl's."""


def parse_into(fv: flags.FlagValues, argv: list[str]) -> list[str]:
    """The positional arguments (with the program name) of `argv` parsed into `fv`; FlagsError."""
    try:
        return fv(argv)
    except flags.Error as err:
        raise FlagsError(str(err)) from err
    except (AttributeError, KeyError) as err:  # ml_collections: a --config.<field> the config lacks
        if not any(a.lstrip("-").startswith(("config.", "noconfig.")) for a in argv[1:]):
            raise
        text = err.args[0] if err.args else err
        text = text.args[0] if isinstance(text, KeyError) and text.args else text
        raise FlagsError("the config has no field " + ". ".join(str(text).splitlines())) from err


def _given_config(argv: Sequence[str]) -> bool:
    return any(a in ("--config", "-config") or a.startswith(("--config=", "-config=")) for a in argv)


def _arguments(argv: Sequence[str], config) -> list[str]:
    """`argv` with `--config=<the default>` in front when it names no config."""
    args = list(argv)
    default = config(args) if callable(config) else config
    return args if default is None or _given_config(args) else [f"--config={default}", *args]


def _program() -> str:
    return sys.argv[0] if sys.argv and sys.argv[0] else "fsr_jax"


#: What --config defaults to: a file, a function of the arguments giving one (or None), or None.
ConfigDefault = Union[str, pathlib.Path, Callable[[list[str]], Union[str, pathlib.Path, None]], None]


def parse(define: Define, argv: Sequence[str], *, config: ConfigDefault = None) -> flags.FlagValues:
    """The flags of `define` parsed from `argv` (the arguments after the program name) into a
    fresh FlagValues, as `run` parses them; its positional arguments are left out. FlagsError
    with absl's message when they cannot be parsed."""
    args = _arguments(argv, config)
    fv = flags.FlagValues()
    define(fv, args)
    parse_into(fv, [_program(), *args])
    return fv


def run(define: Define, main: Main, argv: Sequence[str] | None = None, *, positional: bool = False,
        config: ConfigDefault = None, info_logs: bool = False) -> int:
    """Parse the flags of `define` and call `main(flag_values, args)`.

    Args:
      define: defines the command's flags on the FlagValues it is given; it also gets the
        arguments (after the program name), where --config finds its overrides. FlagsError:
        the arguments cannot be parsed (e.g. no subcommand).
      main: the command; returns its exit status (None: 0). app.UsageError: a usage error.
      argv: the arguments after the program name; None: the process's command line, run
        with absl.app.run (exits).
      positional: whether the command takes positional arguments (otherwise any is an error).
      config: the config file --config defaults to (or a function of the arguments giving it,
        or None); put in front of the arguments when they have no --config, so that the
        default config, like a given one, is read when the flags are parsed.
      info_logs: from a shell, show absl's INFO log lines (the command's progress) unless
        --verbosity says otherwise; by default only warnings and errors, so that a tool's
        output is not buried under its libraries' INFO lines.

    Returns:
      The exit status: main's, or 1 when the flags cannot be parsed (absl's message on stderr).
    """
    args = _arguments(sys.argv[1:] if argv is None else argv, config)

    def call(fv: flags.FlagValues, rest: list[str]) -> int:
        if rest and not positional:
            raise app.UsageError(f"unexpected arguments: {rest} (every setting is a --flag)")
        return main(fv, rest) or 0

    if argv is None:
        try:
            define(flags.FLAGS, args)
        except FlagsError as err:
            report_flags_error(str(err))
            sys.exit(1)

        def parse_or_exit(full: list[str]) -> list[str]:
            try:
                return parse_into(flags.FLAGS, full)
            except FlagsError as err:
                report_flags_error(str(err))
                sys.exit(1)

        def main_from_shell(rest: list[str]) -> int:
            if not flags.FLAGS["verbosity"].present:
                logging.set_verbosity(logging.INFO if info_logs else logging.WARNING)
            return call(flags.FLAGS, rest[1:])

        app.run(main_from_shell, argv=[_program(), *args], flags_parser=parse_or_exit)
    fv = flags.FlagValues()
    try:
        define(fv, args)
        rest = parse_into(fv, [_program(), *args])
    except FlagsError as err:
        report_flags_error(str(err))
        return 1
    try:
        return call(fv, rest[1:])
    except app.UsageError as err:
        sys.stderr.write(f"error: {err}\nPass --helpshort or --helpfull to see help on flags.\n")
        return err.exitcode
