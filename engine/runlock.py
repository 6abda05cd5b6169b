"""One engine per run directory: an exclusive `flock` on `runs/<id>/engine.lock`.

The kernel releases a flock when the last descriptor of the open file goes away, so a dead engine
(kill -9, power cut, OOM killer) never leaves a stale lock, and no timestamp or clock is consulted.

Hand-over from launcher to engine: `run`/`resume` take the lock *before* spawning, pass the locked
descriptor to the child (its number in TUNETOP_LOCK_FD) and close their own copy once the child is
started. Both descriptors share one open file description, so the lock is never free in between: two
resumes released at the same instant, or `stop` followed at once by `resume`, cannot start two engines.
An engine started by hand (no TUNETOP_LOCK_FD) takes the lock itself and refuses to run without it.

`is_held(run_dir)` answers "is some engine alive on this directory" without signalling anything.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

LOCK = "engine.lock"
FD_ENV = "TUNETOP_LOCK_FD"
_RETRIES = 10


class LockBusy(Exception):
    """Another process holds the run directory's lock."""


def acquire(run_dir: Path) -> int:
    """Open and exclusively lock the run's lock file without waiting. Returns the descriptor.

    Raises LockBusy when another process holds it, OSError when the file cannot be opened.
    """
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # A reader's `is_held` probe holds a shared lock for microseconds; a few short retries keep that
    # probe from being mistaken for a live engine. A real engine holds the lock for its whole life.
    for attempt in range(_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            time.sleep(0.01)
    os.close(fd)
    raise LockBusy(str(run_dir))


def inherited_fd(run_dir: Path) -> int | None:
    """The locked descriptor a launcher passed in TUNETOP_LOCK_FD, if it is really this run's lock."""
    raw = os.environ.get(FD_ENV, "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(run_dir / LOCK))
    except OSError:
        return None
    if not same:
        return None
    try:
        # Re-locking through the same open file description succeeds; through any other it fails.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return None
    return fd


def hold_for_engine(run_dir: Path) -> int:
    """The engine's lock for its whole life: the inherited one, or a fresh one. Raises LockBusy."""
    fd = inherited_fd(run_dir)
    if fd is None:
        fd = acquire(run_dir)
    os.environ.pop(FD_ENV, None)   # children of the engine (dataloader workers, a re-exec) must not see it
    return fd


def is_held(run_dir: Path) -> bool:
    """True while any process holds the lock (an engine is alive on this directory)."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
