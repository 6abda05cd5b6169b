"""The `tunetop` command. With no arguments it opens the dashboard; subcommands work in a plain terminal.

Errors are printed as `error: ...` plus a hint, with exit status 2 for bad input and 1 for a failed run;
never a traceback.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from engine import launch, paths, rundir
from engine.data import DataError, load_data
from engine.profile import ProfileError, list_profiles, load_named, preflight
from engine.rundir import RunError

from . import fmt, plan_cli
from .follow import follow

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunetop", description="Fine-tune LLMs on your own GPUs. "
                                "Run without a command to open the dashboard.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("run", help="start a detached run from a profile and follow it (Ctrl+C detaches)")
    s.add_argument("profile", help="profile name or path to a .toml file")
    s.add_argument("-d", "--detach", action="store_true", help="print the run id and return at once")
    s = sub.add_parser("ls", help="list runs")
    s = sub.add_parser("watch", help="follow a run (Ctrl+C stops watching, not the run)")
    s.add_argument("run", nargs="?", default="last", help="run id, unique prefix, or last (default)")
    s = sub.add_parser("stop", help="stop a run gracefully: checkpoint, then exit")
    s.add_argument("run")
    s.add_argument("-w", "--wait", action="store_true", help="wait until the engine has exited")
    s = sub.add_parser("resume", help="continue a stopped or interrupted run from its last checkpoint")
    s.add_argument("run")
    s.add_argument("-d", "--detach", action="store_true")
    s = sub.add_parser("logs", help="print a run's engine log")
    s.add_argument("run", nargs="?", default="last")
    s.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
    s = sub.add_parser("validate", help="check a profile and its data without training")
    s.add_argument("profile")
    s = sub.add_parser("merge", help="merge a finished run's adapter into the base model (safetensors)")
    s.add_argument("run")
    sub.add_parser("profiles", help="list bundled and saved profiles")
    plan_cli.add_parsers(sub)   # estimate, fit
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return open_dashboard()
    handler = COMMANDS[args.command]
    try:
        return handler(args) or 0
    except (ProfileError, DataError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def open_dashboard() -> int:
    try:
        from .app import main as app_main
    except ImportError:
        build_parser().print_help()
        return 0
    return app_main() or 0


# -- commands ------------------------------------------------------------------------------------------

def cmd_run(args) -> int:
    profile = load_named(args.profile)
    preflight.check(profile)
    run_dir = launch.launch(profile)
    print(f"run {run_dir.name} started ({run_dir})")
    return _follow_or_detach(run_dir, args.detach)


def cmd_resume(args) -> int:
    run_dir = launch.resume(rundir.resolve(args.run))
    ckpt = rundir.last_checkpoint(run_dir)
    print(f"run {run_dir.name} resumed from {ckpt.name if ckpt else 'the beginning (no checkpoint yet)'}")
    return _follow_or_detach(run_dir, args.detach)


def _follow_or_detach(run_dir: Path, detach: bool) -> int:
    if detach:
        print(f"follow it with `tunetop watch {run_dir.name}`")
        return 0
    return cmd_watch(argparse.Namespace(run=str(run_dir)))


def cmd_watch(args) -> int:
    run_dir = rundir.resolve(args.run)
    try:
        state = follow(run_dir)
    except KeyboardInterrupt:
        alive = rundir.alive_pid(run_dir) is not None
        print(f"\ndetached; the run goes on. `tunetop watch {run_dir.name}` follows it again" if alive else "")
        return 0
    return 1 if state.status in ("failed", "interrupted") else 0


def cmd_ls(args) -> int:
    runs = [rundir.read_state(r) for r in rundir.list_runs()]
    if not runs:
        print(f"no runs yet under {paths.runs_root()}; start one with `tunetop run demo`")
        return 0
    runs.sort(key=lambda s: (not s.active, [-ord(c) for c in s.run_id]))
    rows = [("ID", "PROFILE", "MODEL", "METHOD", "STATUS", "STEP", "LOSS", "ELAPSED")]
    for s in runs:
        rows.append((s.run_id, s.profile, _short_model(s.model), s.method or "-", s.status,
                     f"{s.step}/{s.total_steps or '?'}", fmt.number(s.loss), fmt.duration(s.elapsed)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_stop(args) -> int:
    run_dir = rundir.resolve(args.run)
    pid = launch.stop(run_dir)
    print(f"asked run {run_dir.name} (pid {pid}) to stop: it finishes the current step and saves a checkpoint")
    if args.wait:
        while rundir.alive_pid(run_dir) is not None:
            time.sleep(0.5)
        state = rundir.read_state(run_dir)
        print(f"run {run_dir.name} is {state.status} at step {state.step}")
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


def cmd_validate(args) -> int:
    profile = load_named(args.profile)
    print(f"profile {profile.name} ({profile.source}): valid")
    print(f"  model: {profile.model.name_or_path} ({profile.method.type})")
    preflight.check(profile)
    report = load_data(profile.data)
    print("  " + report.summary().replace("\n", "\n  "))
    t = profile.training
    print(f"  training: micro-batch {t.micro_batch} x accumulation {t.grad_accum}"
          f" = effective batch {profile.effective_batch or 'auto'}, max_seq_len {t.max_seq_len}, "
          + (f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"))
    return 0


def cmd_merge(args) -> int:
    run_dir = rundir.resolve(args.run)
    state = rundir.read_state(run_dir)
    if state.status != "completed":
        raise RunError(f"run {run_dir.name} is {state.status}; only a completed run has an adapter to merge")
    result = subprocess.run([sys.executable, "-m", "engine.train.merge", str(run_dir)], cwd=paths.PROJECT_ROOT)
    if result.returncode == 0:
        print(f"merged model saved to {run_dir / 'merged'}")
    return result.returncode


def cmd_profiles(args) -> int:
    for path in list_profiles():
        try:
            desc = load_named(str(path)).description
        except ProfileError:
            desc = "(invalid: `tunetop validate` says why)"
        print(f"{path.stem:<24} {desc}")
    return 0


def _short_model(model: str) -> str:
    return Path(model).name if model.startswith("/") else (model or "-")


COMMANDS = {"run": cmd_run, "ls": cmd_ls, "watch": cmd_watch, "stop": cmd_stop, "resume": cmd_resume,
            "logs": cmd_logs, "validate": cmd_validate, "merge": cmd_merge, "profiles": cmd_profiles,
            "estimate": plan_cli.cmd_estimate, "fit": plan_cli.cmd_fit}
