"""`tunetop ls` and `tunetop logs`: read run directories, never touch them."""
from __future__ import annotations

from pathlib import Path

from engine import paths, rundir

from .. import fmt, history


def register(sub) -> None:
    s = sub.add_parser("ls", help="list runs (filters: --status, --profile, --since; --sort)")
    history.add_ls_arguments(s)
    s.set_defaults(handler=cmd_ls)
    s = sub.add_parser("logs", help="print a run's engine log")
    s.add_argument("run", nargs="?", default="last", help="run id, unique prefix, path, or last (default)")
    s.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
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
        rows.append((s.run_id, s.profile, _short_model(s.model), s.method or "-", s.status,
                     f"{s.step}/{s.total_steps or '?'}", fmt.number(s.loss), fmt.duration(s.elapsed),
                     fmt.size(disk[s.run_id])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_logs(args) -> int:
    run_dir = rundir.resolve(args.run)
    log = run_dir / rundir.LOG
    if not log.exists():
        print(f"run {run_dir.name} has no engine log yet")
        return 0
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    print("\n".join(lines[-args.lines:] if args.lines else lines))
    return 0


def _short_model(model: str) -> str:
    return Path(model).name if model.startswith("/") else (model or "-")
