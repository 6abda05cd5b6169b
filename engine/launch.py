"""Start, stop and resume detached training engines.

The engine runs as `python -m engine.train RUN_DIR` in a new session (its own process group, no
controlling terminal), stdin from /dev/null and output to engine.log, so it survives the TUI quitting,
a SIGHUP, or the SSH connection dropping. Stopping is a SIGTERM: the engine finishes the optimizer step
it is in, saves a resumable checkpoint and writes `end` with status "stopped".
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from . import paths, rundir
from .profile import Profile
from .rundir import RunError


def engine_command(run_dir: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "engine.train", str(run_dir)]
    return cmd + ["--resume"] if resume else cmd


def _spawn(run_dir: Path, resume: bool) -> int:
    env = dict(os.environ)
    # The engine imports `engine` from this checkout even when the caller's cwd is elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # OpenMP threads that spin while waiting starve each other when the CPU is shared (another run, the
    # dashboard, a busy rig): measured here, a CPU step took 1.15 s spinning and 0.07 s passive.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with open(run_dir / rundir.LOG, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(engine_command(run_dir, resume), stdin=devnull, stdout=log,
                                stderr=subprocess.STDOUT, cwd=run_dir, env=env, start_new_session=True,
                                close_fds=True)
    rundir.write_pid(run_dir, proc.pid)
    return proc.pid


def launch(profile: Profile, root: Path | None = None) -> Path:
    """Create a run directory for the profile and start its engine. Returns the run directory."""
    run_dir = rundir.create(profile, root)
    _spawn(run_dir, resume=False)
    return run_dir


def stop(run_dir: Path, sig: int = signal.SIGTERM) -> int:
    """Ask a running engine to stop gracefully. Returns its pid."""
    pid = rundir.alive_pid(run_dir)
    if pid is None:
        state = rundir.read_state(run_dir)
        hint = (f"`tunetop resume {run_dir.name}` continues it from its last checkpoint"
                if state.status in ("stopped", "interrupted", "failed") else "")
        raise RunError(f"run {run_dir.name} is not running (it is {state.status})", hint=hint)
    os.kill(pid, sig)
    return pid


def resume(run_dir: Path) -> Path:
    """Start the engine again on an existing run directory; it continues from the last checkpoint."""
    state = rundir.read_state(run_dir)
    if state.active:
        raise RunError(f"run {run_dir.name} is already running", hint=f"`tunetop watch {run_dir.name}` follows it")
    if state.status == "completed":
        raise RunError(f"run {run_dir.name} already completed ({state.step} steps)",
                       hint="start a new run with `tunetop run PROFILE`, or raise max_steps in a new profile")
    _spawn(run_dir, resume=True)
    return run_dir
