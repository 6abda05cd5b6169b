"""`tunetop ls` and `tunetop logs`: read run directories, never touch them.

Both are cheap whatever a run's size: `ls` reads the head and tail of each events.jsonl
(engine/rundir.py); `logs -n N` reads the engine log backwards from its end; `logs` streams it.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

from engine import paths, rundir
from engine.rundir import RunError

from .. import fmt, history

RUN_REF = "run id, unique prefix, path to the run folder, or last (the newest, default)"
_BLOCK = 64 << 10


def register(sub) -> None:
    s = sub.add_parser("ls", help="list runs (filters: --status, --profile, --since; --sort)")
    history.add_ls_arguments(s)
    s.set_defaults(handler=cmd_ls)
    s = sub.add_parser("logs", help="print a run's engine log")
    s.add_argument("run", nargs="?", default="last", help=RUN_REF)
    s.add_argument("-n", "--lines", type=int, default=0, metavar="N", help="only the last N lines")
    s.set_defaults(handler=cmd_logs)


def cmd_ls(args) -> int:
    runs = [rundir.read_state(r) for r in rundir.list_runs()]
    if not runs:
        print(f"no runs yet under {paths.runs_root()}; start one with `tunetop run demo`")
        return 0
    runs, disk = history.select(runs, args)   # --status/--profile/--since/--sort, disk use
    if not runs:
        print(f"no run matches; `tunetop ls` without filters lists every run under {paths.runs_root()}")
        return 0
    rows = [("ID", "PROFILE", "MODEL", "METHOD", "STATUS", "STEP", "LOSS", "ELAPSED", "DISK")]
    for s in runs:
        status = f"{s.status} ({s.note})" if s.note else s.status
        rows.append((s.run_id, s.profile, _short_model(s.model), s.method or "-", status,
                     f"{s.step}/{s.total_steps or '?'}", fmt.number(s.loss), fmt.duration(s.elapsed),
                     fmt.size(disk[s.run_id])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_logs(args) -> int:
    run_dir = rundir.resolve(args.run)
    fd = _open_log(run_dir)
    if fd is None:
        print(f"run {run_dir.name} has no engine log yet")
        return 0
    with os.fdopen(fd, "rb") as f:
        out = sys.stdout.buffer
        if args.lines > 0:
            data = _last_lines(f, args.lines)
            out.write(data if data.endswith(b"\n") or not data else data + b"\n")
        else:
            while chunk := f.read(1 << 20):
                out.write(chunk)
        out.flush()
    return 0


def _open_log(run_dir: Path) -> int | None:
    """The engine log, opened only if it is a regular file inside the run directory (None: not there)."""
    log = run_dir / rundir.LOG
    if log.is_symlink():
        target = Path(os.path.realpath(log))
        if not target.is_relative_to(Path(os.path.realpath(run_dir))):
            raise RunError(f"{log} is a symbolic link to {target}, outside the run directory; not following it",
                           hint="read that file yourself if you trust it, or replace the link with the log")
        log = target
    try:
        # O_NONBLOCK: a FIFO planted as engine.log must not hang us in open(); refused below.
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunError(f"{log} is a symbolic link; not following it",
                           hint="replace the link with the log") from None
        raise RunError(f"cannot read {log}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError(f"{log} is not a regular file", hint="the engine writes a plain file there; remove it")
    os.set_blocking(fd, True)
    return fd


def _last_lines(f, n: int) -> bytes:
    """The last n lines of a file, read backwards in blocks (time and memory grow with n, not the file)."""
    end = f.seek(0, os.SEEK_END)
    pos, data = end, b""
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        # n lines need n newlines before the last line's (a final "\n" ends the last line, it opens none).
        if data.count(b"\n", 0, len(data) - 1) >= n:
            break
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:])


def _short_model(model: str) -> str:
    return Path(model).name if model.startswith("/") else (model or "-")
