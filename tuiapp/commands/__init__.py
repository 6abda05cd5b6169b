"""The `tunetop` subcommands, one module per group. Each module has `register(sub)`, which adds its
subparsers and sets `handler=` on each (`s.set_defaults(handler=cmd_x)`).

To add a command: write a module here with `register(sub)` and add it to MODULES (order = order in --help).
Handlers return an exit status (or None for 0) and raise engine.errors.TunetopError for anything the user
must fix: tuiapp/cli.py renders it (`error: ...` + hint) and handles broken pipes for every command.
"""
from __future__ import annotations

from . import history_cmds, inspect_cmds, merge_cmd, preview_cmd, profile_cmds, report_cmds, run_cmds

MODULES = [run_cmds, inspect_cmds, report_cmds, history_cmds, profile_cmds, preview_cmd, merge_cmd]
