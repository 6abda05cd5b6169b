"""`tunetop prune` and `tunetop rm`: free disk space. Both ask first (or take --yes) and refuse a live run."""
from __future__ import annotations

import shutil
import sys

from engine import rundir
from engine.errors import TunetopError

from .. import history
from ..fmt import size


def register(sub) -> None:
    s = sub.add_parser("prune", help="delete all but the last complete checkpoint of a run")
    s.add_argument("run", help="run id, unique prefix, path, or last")
    s.add_argument("-y", "--yes", action="store_true", help="do not ask")
    s.set_defaults(handler=cmd_prune)
    s = sub.add_parser("rm", help="delete a finished run's directory (checkpoints, adapter, logs)")
    s.add_argument("runs", nargs="+", help="run ids, unique prefixes or paths")
    s.add_argument("-y", "--yes", action="store_true", help="do not ask")
    s.set_defaults(handler=cmd_rm)


def cmd_prune(args) -> int:
    run_dir = rundir.resolve(args.run)
    _refuse_live(run_dir, "prune")
    keep, doomed = history.prune_plan(run_dir)
    if keep is None:
        raise TunetopError(f"run {run_dir.name} has no complete checkpoint to keep; nothing was deleted",
                           f"`tunetop rm {run_dir.name}` deletes the whole run")
    if not doomed:
        print(f"run {run_dir.name}: only {keep.name} is left; nothing to prune")
        return 0
    freed = sum(rundir.disk_use(p) for p in doomed)
    names = ", ".join(p.name for p in doomed)
    if not _confirm(f"delete {len(doomed)} checkpoint(s) of run {run_dir.name} ({names}; {size(freed)}), "
                    f"keeping {keep.name}?", args.yes):
        print("nothing deleted")
        return 1
    for p in doomed:
        shutil.rmtree(p)
    print(f"deleted {len(doomed)} checkpoint(s), freed {size(freed)}; kept {keep.name}")
    return 0


def cmd_rm(args) -> int:
    dirs = [rundir.resolve(r) for r in args.runs]
    for d in dirs:
        _refuse_live(d, "rm")
    total = sum(rundir.disk_use(d) for d in dirs)
    what = dirs[0].name if len(dirs) == 1 else f"{len(dirs)} runs ({', '.join(d.name for d in dirs)})"
    if not _confirm(f"delete run {what} for good ({size(total)})?", args.yes):
        print("nothing deleted")
        return 1
    for d in dirs:
        rundir.delete(d)
    print(f"deleted {what}, freed {size(total)}")
    return 0


def _refuse_live(run_dir, verb: str) -> None:
    if rundir.alive_pid(run_dir) is not None:
        raise TunetopError(f"run {run_dir.name} is still running; `tunetop {verb}` leaves live runs alone",
                           f"stop it first (`tunetop stop {run_dir.name} --wait`)")


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise TunetopError(f"{question[0].upper()}{question[1:]} Not asked: there is no terminal to answer on",
                           "add --yes to confirm from a script")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
