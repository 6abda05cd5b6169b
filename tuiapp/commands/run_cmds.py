"""`tunetop run`, `resume`, `stop` and `watch`: start, end and follow detached engines."""
from __future__ import annotations

from pathlib import Path

from engine import rundir

from . import distributed_flags

# The launcher, the validator and the follower are imported by the handlers that use them: `tunetop --help`
# and `tunetop ls` build this parser and should load nothing else.

RUN_REF = "run id, unique prefix, path to the run folder, or last (the newest)"


def register(sub) -> None:
    s = sub.add_parser("run", help="start a detached run from a profile and follow it (Ctrl+C detaches)")
    s.add_argument("profile", help="profile name or path to a .toml file")
    s.add_argument("-d", "--detach", action="store_true", help="print the run id and return at once")
    distributed_flags.add_flags(s)
    s.set_defaults(handler=cmd_run)
    s = sub.add_parser("watch", help="follow a run (Ctrl+C stops watching, not the run)")
    s.add_argument("run", nargs="?", default=None,
                   help=RUN_REF + "; default: the newest running run, else the newest")
    s.set_defaults(handler=cmd_watch)
    s = sub.add_parser("stop", help="stop a run gracefully: finish the step, checkpoint, then exit")
    s.add_argument("run", help=RUN_REF)
    s.add_argument("-w", "--wait", action="store_true", help="wait (at most --timeout) until the engine has exited")
    s.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="how long --wait waits before saying what it saw (default 120 s)")
    s.add_argument("--force", action="store_true",
                   help="end it even if it hangs: SIGTERM, then after --grace seconds SIGKILL to its process "
                        "group; the run shows interrupted and resumes from its last checkpoint")
    s.add_argument("--grace", type=float, default=10.0, metavar="S",
                   help="seconds --force gives the engine to stop cleanly (default 10)")
    s.set_defaults(handler=cmd_stop)
    s = sub.add_parser("resume", help="continue a stopped or interrupted run from its last checkpoint")
    s.add_argument("run", help=RUN_REF)
    s.add_argument("-d", "--detach", action="store_true", help="print the run id and return at once")
    s.add_argument("--reset-optimizer", action="store_true",
                   help="start a fresh optimizer when the checkpoint's optimizer state is missing or broken")
    s.add_argument("--accept-changed-data", action="store_true",
                   help="resume although the dataset or run.toml changed since launch (logged as a warning; "
                        "the data order changes)")
    s.set_defaults(handler=cmd_resume)


def cmd_run(args) -> int:
    from engine import launch
    from engine.profile import load_named, preflight
    profile = distributed_flags.apply(load_named(args.profile), args)   # --gpus, --processes, ... override
    preflight.check(profile)
    layout = distributed_flags.describe(profile)
    if layout is not None:
        print(f"layout: {layout.describe()} ({layout.reason})", flush=True)
    run_dir = launch.launch(profile)
    print(f"run {run_dir.name} started ({run_dir})", flush=True)
    return _follow_or_detach(run_dir, args.detach)


def cmd_resume(args) -> int:
    from engine import launch
    run_dir = launch.resume(rundir.resolve(args.run), reset_optimizer=args.reset_optimizer,
                            accept_changed_data=args.accept_changed_data)
    ckpt = rundir.last_checkpoint(run_dir)
    print(f"run {run_dir.name} resumed from {ckpt.name if ckpt else 'the beginning (no checkpoint yet)'}",
          flush=True)
    return _follow_or_detach(run_dir, args.detach)


def _follow_or_detach(run_dir: Path, detach: bool) -> int:
    if detach:
        print(f"follow it with `tunetop watch {run_dir.name}`")
        return 0
    return _watch(run_dir)


def default_watch_target() -> Path:
    """The newest run with a live engine, else the newest run."""
    runs = rundir.list_runs()
    live = next((r for r in runs if rundir.is_alive(r)), None)
    return live or rundir.resolve("last")


def cmd_watch(args) -> int:
    return _watch(rundir.resolve(args.run) if args.run else default_watch_target())


def _watch(run_dir: Path) -> int:
    from ..follow import follow
    try:
        state = follow(run_dir)
    except KeyboardInterrupt:
        alive = rundir.is_alive(run_dir)
        print(f"\ndetached; the run goes on. `tunetop watch {run_dir.name}` follows it again" if alive else "")
        return 0
    return 1 if state.status in ("failed", "interrupted") else 0


def cmd_stop(args) -> int:
    from engine import launch
    run_dir = rundir.resolve(args.run)
    name = run_dir.name
    if args.force:
        pid, killed = launch.force_stop(run_dir, args.grace)
        state = rundir.read_state(run_dir)
        if killed:
            print(f"run {name} (pid {pid}) did not stop within {args.grace:g} s of SIGTERM: killed its process "
                  f"group (SIGKILL). It is {state.status} at step {state.step}; {_resume_hint(run_dir)}")
        else:
            print(f"run {name} (pid {pid}) stopped on SIGTERM: it is {state.status} at step {state.step}")
        return 0 if not state.active else 1
    pid = launch.stop(run_dir)
    print(f"asked run {name} (pid {pid}) to stop: it finishes the current step and saves a checkpoint", flush=True)
    if not args.wait:
        return 0
    if launch.wait_exit(run_dir, args.timeout):
        state = rundir.read_state(run_dir)
        print(f"run {name} is {state.status} at step {state.step}")
        return 0
    state = rundir.read_state(run_dir)
    seen = f"{state.status}" + (f", {state.note}" if state.note else "")
    error = rundir.RunError(f"run {name} is still alive after {args.timeout:g} s: it is {seen}, at step {state.step}",
                            hint=f"`tunetop stop --force {name}` ends it (SIGKILL after a grace period); it can "
                                 "then be resumed from its last checkpoint")
    error.exit_code = 1
    raise error


def _resume_hint(run_dir: Path) -> str:
    ckpt = rundir.last_checkpoint(run_dir)
    where = f"from {ckpt.name}" if ckpt else "from the beginning (no checkpoint yet)"
    return f"`tunetop resume {run_dir.name}` continues it {where}"
