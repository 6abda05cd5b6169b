"""`tunetop merge RUN`: fold a completed run's adapter into the base model.

The merge runs in a subprocess (it imports torch and transformers, which tunetop's CLI never does); its
output, library progress bars and warnings included, goes to runs/<id>/merge.log, not the terminal.
"""
from __future__ import annotations

import subprocess
import sys

from engine import paths, rundir
from engine.rundir import RunError

MERGE_LOG = "merge.log"


def register(sub) -> None:
    s = sub.add_parser("merge", help="merge a finished run's adapter into the base model (safetensors)")
    s.add_argument("run", help="run id, unique prefix, path to the run folder, or last (the newest)")
    s.set_defaults(handler=cmd_merge)


def cmd_merge(args) -> int:
    run_dir = rundir.resolve(args.run)
    state = rundir.read_state(run_dir)
    if state.status != "completed":
        raise RunError(f"run {run_dir.name} is {state.status}; only a completed run has an adapter to merge",
                       hint="`tunetop ls` shows which runs completed")
    log_path = run_dir / MERGE_LOG
    print(f"merging {run_dir.name} (output in {log_path}) ...", flush=True)
    try:
        with open(log_path, "wb") as log:
            result = subprocess.run([sys.executable, "-m", "engine.train.merge", str(run_dir)], cwd=paths.PROJECT_ROOT,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise RunError(f"cannot write {log_path}: {exc.strerror or exc}") from None
    if result.returncode == 0:
        print(f"merged model saved to {run_dir / 'merged'}")
        return 0
    error = RunError(_last_error(log_path) or f"the merge failed (exit status {result.returncode})",
                     hint=f"the merge's full output is in {log_path}")
    error.exit_code = 1
    raise error


def _last_error(log_path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else ""
