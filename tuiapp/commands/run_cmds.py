"""`tunetop run`, `resume`, `stop` and `watch`: start, end and follow detached engines."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine import launch, rundir
from engine.profile import load_named, preflight

from ..follow import follow


def register(sub) -> None:
    s = sub.add_parser("run", help="start a detached run from a profile and follow it (Ctrl+C detaches)")
    s.add_argument("profile", help="profile name or path to a .toml file")
    s.add_argument("-d", "--detach", action="store_true", help="print the run id and return at once")
    s.set_defaults(handler=cmd_run)
    s = sub.add_parser("watch", help="follow a run (Ctrl+C stops watching, not the run)")
    s.add_argument("run", nargs="?", default="last", help="run id, unique prefix, or last (default)")
    s.set_defaults(handler=cmd_watch)
    s = sub.add_parser("stop", help="stop a run gracefully: checkpoint, then exit")
    s.add_argument("run", help="run id, unique prefix, path, or last")
    s.add_argument("-w", "--wait", action="store_true", help="wait until the engine has exited")
    s.set_defaults(handler=cmd_stop)
    s = sub.add_parser("resume", help="continue a stopped or interrupted run from its last checkpoint")
    s.add_argument("run", help="run id, unique prefix, path, or last")
    s.add_argument("-d", "--detach", action="store_true", help="print the run id and return at once")
    s.set_defaults(handler=cmd_resume)


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
