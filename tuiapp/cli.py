"""The `tunetop` command. With no arguments it opens the dashboard; subcommands work in a plain terminal.

The subcommands live in tuiapp/commands/ (one module per group, each with `register(sub)`). This file is
the one place that turns failures into text, for every subcommand:

- engine.errors.TunetopError (profile, data, run, setup errors) -> `error: MESSAGE` + `  hint: HINT` on
  stderr, exit status `exc.exit_code` (2 for bad input, 1 for a failed run); never a traceback.
- Output piped into a reader that goes away (`tunetop ls | head`) ends quietly with status 141 (what a
  shell reports for a command ended by SIGPIPE): stdout is pointed at /dev/null so the interpreter's
  final flush cannot raise again.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

from engine.errors import TunetopError, render_text

from . import plan_cli
from .commands import MODULES

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13   # 128 + SIGPIPE, as a shell reports `cmd | head`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunetop", description="Fine-tune LLMs on your own GPUs. "
                                "Run without a command to open the dashboard.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in MODULES:
        module.register(sub)
    plan_cli.add_parsers(sub)   # estimate, fit
    return p


# plan_cli predates the `handler=` default; its commands are looked up by name.
_LEGACY = {"estimate": plan_cli.cmd_estimate, "fit": plan_cli.cmd_fit}


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        except SystemExit as exc:   # argparse's --help and usage errors: flush here, where EPIPE is caught
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return _quiet_broken_pipe()
        raise


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return open_dashboard()
    handler = getattr(args, "handler", None) or _LEGACY[args.command]
    try:
        return handler(args) or 0
    except TunetopError as exc:
        return _fail(exc, exc.exit_code)
    except _legacy_errors() as exc:   # ProfileError / DataError until they subclass TunetopError
        return _fail(exc, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return 130


def _fail(exc: BaseException, code: int) -> int:
    sys.stdout.flush()
    print(render_text(exc), file=sys.stderr)
    return code


def _legacy_errors() -> tuple[type[BaseException], ...]:
    from engine.data import DataError
    from engine.profile import ProfileError
    return tuple(e for e in (ProfileError, DataError) if not issubclass(e, TunetopError)) or (TunetopError,)


def _quiet_broken_pipe() -> int:
    # The reader is gone: nothing more can be shown. Point stdout at /dev/null so the interpreter's
    # flush at exit does not raise a second BrokenPipeError ("Exception ignored ... BrokenPipeError").
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def open_dashboard() -> int:
    try:
        from .app import main as app_main
    except ImportError:
        build_parser().print_help()
        return 0
    return app_main() or 0
