"""Start, stop and resume detached training engines.

The engine runs as `python -m engine.train RUN_DIR [--resume] [--reset-optimizer] [--accept-changed-data]`
in a new session (its own process group, no controlling terminal), stdin from /dev/null and output to
engine.log, so it survives the TUI quitting, a SIGHUP, or the SSH connection dropping.

One engine per run directory: `launch` and `resume` take the run's lock (engine/runlock.py) *before*
they spawn, hand the locked descriptor to the child (pass_fds + TUNETOP_LOCK_FD) and close their own copy
once it runs. Whoever loses the race (two resumes at once, a resume while the last engine is still saving
its checkpoint) gets a RunError and starts nothing.

Stopping is a SIGTERM: the engine finishes the optimizer step it is in, saves a resumable checkpoint and
writes `end` with status "stopped". `force_stop` adds a SIGKILL of the engine's process group after a
grace period; the run then shows `interrupted` and resumes from its last checkpoint.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import paths, rundir, runlock, threads
from .distributed.launching import distributed_argv, read_layout
from .profile import Profile
from .rundir import RunError


def engine_command(run_dir: Path, resume: bool = False, reset_optimizer: bool = False,
                   accept_changed_data: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "engine.train", str(run_dir)]
    if resume:
        cmd.append("--resume")
        cmd += ["--reset-optimizer"] if reset_optimizer else []
        cmd += ["--accept-changed-data"] if accept_changed_data else []
    return cmd


def _lock(run_dir: Path) -> int:
    """Take the run's lock for the launch; RunError (starting nothing) when it is held or unwritable."""
    try:
        return runlock.acquire(run_dir)
    except runlock.LockBusy:
        raise RunError(f"run {run_dir.name} is already running (another engine holds {run_dir / runlock.LOCK})",
                       hint=f"`tunetop watch {run_dir.name}` follows it; if it is stopping, "
                            f"`tunetop stop -w {run_dir.name}` waits until it has exited") from None
    except OSError as exc:
        raise _unwritable(run_dir, exc) from None


def _unwritable(run_dir: Path, exc: OSError) -> RunError:
    why = "the file system is read-only" if exc.errno == errno.EROFS else (exc.strerror or str(exc))
    return RunError(f"cannot write to the run directory {run_dir}: {why}",
                    hint="the engine must write events, checkpoints and its lock there; "
                         "remount it read-write or move the run to a writable TUNETOP_HOME")


def _spawn(run_dir: Path, lock_fd: int, argv: list[str]) -> int:
    """Start the engine holding `lock_fd`; the caller's copy is closed here whatever happens."""
    env = dict(os.environ)
    # The engine imports `engine` from this checkout even when the caller's cwd is elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env[runlock.FD_ENV] = str(lock_fd)
    # Several processes ([distributed]): the same engine under torchrun, whose agent holds the lock and is
    # the pid recorded below (engine/distributed/launching.py). One process: argv unchanged.
    argv = distributed_argv(run_dir, argv, env)
    # How OpenMP threads wait, from how busy the CPU is now (engine/threads.py has the measurements).
    choice = threads.choose(env, processes=int((read_layout(run_dir) or {}).get("processes") or 1))
    env.update(choice.env)
    try:
        with open(run_dir / rundir.LOG, "ab") as log, open(os.devnull, "rb") as devnull:
            log.write(choice.reason.encode() + b"\n")
            log.flush()
            proc = subprocess.Popen(argv, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                                    env=env, start_new_session=True, close_fds=True, pass_fds=(lock_fd,))
        rundir.write_pid(run_dir, proc.pid)
    except OSError as exc:
        raise _unwritable(run_dir, exc) from None
    finally:
        os.close(lock_fd)   # the child holds the same open file description: the lock stays taken
    return proc.pid


def launch(profile: Profile, root: Path | None = None) -> Path:
    """Create a run directory for the profile and start its engine. Returns the run directory."""
    from . import notify
    notify.settings(profile)   # config.toml's [notify] and the profile's: a ConfigError before anything starts
    run_dir = rundir.create(profile, root)
    fd = _lock(run_dir)
    try:
        rundir.record_segment(run_dir)
    except OSError as exc:
        os.close(fd)
        raise _unwritable(run_dir, exc) from None
    _spawn(run_dir, fd, engine_command(run_dir))
    return run_dir


def resume(run_dir: Path, reset_optimizer: bool = False, accept_changed_data: bool = False) -> Path:
    """Start the engine again on an existing run directory; it continues from the last checkpoint.

    The lock is taken first and kept until the engine holds it, so the state checked here cannot change
    under us and no second engine can start, whatever the timing.
    """
    from . import notify
    fd = _lock(run_dir)
    try:
        state = rundir.read_state(run_dir, alive=False)   # we hold the lock: nobody else is running
        if state.status == "completed":
            raise RunError(f"run {run_dir.name} already completed ({state.step} steps)",
                           hint="start a new run with `tunetop run PROFILE`, or raise max_steps in a new profile")
        notify.settings(rundir.load_profile(run_dir))   # config.toml may have changed since the launch
        rundir.record_segment(run_dir)
    except OSError as exc:
        os.close(fd)
        raise _unwritable(run_dir, exc) from None
    except BaseException:
        os.close(fd)
        raise
    _spawn(run_dir, fd, engine_command(run_dir, True, reset_optimizer, accept_changed_data))
    return run_dir


def stop(run_dir: Path, sig: int = signal.SIGTERM) -> int:
    """Ask a running engine to stop gracefully. Returns its pid."""
    return _signal(run_dir, sig)


def _target(run_dir: Path) -> int:
    if not rundir.is_alive(run_dir):
        state = rundir.read_state(run_dir)
        hint = (f"`tunetop resume {run_dir.name}` continues it from its last checkpoint"
                if state.status in ("stopped", "interrupted", "failed") else "")
        raise RunError(f"run {run_dir.name} is not running (it is {state.status})", hint=hint)
    found = rundir.verified_pid(run_dir)
    if found is None:
        raise RunError(f"run {run_dir.name} is alive (its lock is held) but {rundir.PID} does not name a process "
                       "with a matching start time, so nothing was signalled",
                       hint=f"find the holder with `fuser -v {run_dir / runlock.LOCK}` and stop it yourself")
    return found[0]


def _signal(run_dir: Path, sig: int) -> int:
    pid = _target(run_dir)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass   # it exited between the check and the signal: what was asked for
    return pid


def wait_exit(run_dir: Path, timeout: float, interval: float = 0.2) -> bool:
    """Wait until no engine holds the run's lock, at most `timeout` seconds. True when it has exited."""
    deadline = time.monotonic() + timeout
    while rundir.is_alive(run_dir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def force_stop(run_dir: Path, grace: float = 10.0) -> tuple[int, bool]:
    """SIGTERM, up to `grace` seconds for a clean stop, then SIGKILL to the engine's whole process group
    (dataloader workers, torchrun ranks). Returns (pid, killed): killed is False when SIGTERM sufficed."""
    pid = _signal(run_dir, signal.SIGTERM)
    if wait_exit(run_dir, grace):
        return pid, False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = None
    try:
        # The engine leads its own session (start_new_session): its group is its own, never ours.
        if pgid is not None and pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_exit(run_dir, 10.0)
    return pid, True
