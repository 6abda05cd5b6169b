"""`tunetop merge RUN`: fold a completed run's adapter into the base model."""
from __future__ import annotations

import subprocess
import sys

from engine import paths, rundir
from engine.rundir import RunError


def register(sub) -> None:
    s = sub.add_parser("merge", help="merge a finished run's adapter into the base model (safetensors)")
    s.add_argument("run", help="run id, unique prefix, path, or last")
    s.set_defaults(handler=cmd_merge)


def cmd_merge(args) -> int:
    run_dir = rundir.resolve(args.run)
    state = rundir.read_state(run_dir)
    if state.status != "completed":
        raise RunError(f"run {run_dir.name} is {state.status}; only a completed run has an adapter to merge")
    result = subprocess.run([sys.executable, "-m", "engine.train.merge", str(run_dir)], cwd=paths.PROJECT_ROOT)
    if result.returncode == 0:
        print(f"merged model saved to {run_dir / 'merged'}")
    return result.returncode
