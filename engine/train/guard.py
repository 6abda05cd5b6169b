"""What keeps one engine honest about its run directory for its whole life (light: no torch).

* The lock: `runlock.hold_for_engine` (handed over by the launcher, or taken here). An engine that cannot
  get it exits before it writes anything: another engine is alive on this directory.
  Under torchrun the agent holds the lock for every rank (engine/distributed), so ranks do not take it.
* The heartbeat: a daemon thread touches runs/<id>/heartbeat every HEARTBEAT_S seconds, whatever training
  is doing, so readers tell a live engine from a frozen one (SIGSTOP, a hung driver call): `hung`.
* The directory's identity (device, inode) recorded at start: if the run directory is deleted or moved,
  `gone()` says so and the engine stops at the next step boundary without writing anything by path
  (writing by path would recreate the directory somewhere the user no longer expects it).
* Room for the last word: a small preallocated file released just before the `end` event, so a full disk
  still gets its final state recorded.
"""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from .. import runlock

HEARTBEAT = "heartbeat"
HEARTBEAT_S = 2.0
RESERVE = ".end-reserve"
RESERVE_BYTES = 256 << 10
EXIT_LOCKED = 4     # another engine holds the run directory: nothing was written


class RunDirGone(Exception):
    """The run directory was deleted or moved while the engine ran."""


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class RunGuard:
    def __init__(self, run_dir: Path, rank0: bool = True):
        self.run_dir = Path(run_dir)
        self.rank0 = rank0
        self.lock_fd: int | None = None
        self.identity = _identity(self.run_dir)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the lock ------------------------------------------------------------------------------------------

    def take_lock(self) -> None:
        """Raises runlock.LockBusy (another engine) or OSError (a read-only or missing directory)."""
        if self.identity is None:
            raise FileNotFoundError(errno.ENOENT, "the run directory does not exist", str(self.run_dir))
        if under_torchrun():
            os.environ.pop(runlock.FD_ENV, None)
            return
        self.lock_fd = runlock.hold_for_engine(self.run_dir)

    def keep_lock_across_exec(self, env: dict) -> None:
        """Before os.execve (the OOM relaunch): the same locked descriptor survives into the new image."""
        if self.lock_fd is not None:
            os.set_inheritable(self.lock_fd, True)
            env[runlock.FD_ENV] = str(self.lock_fd)

    # -- the directory -------------------------------------------------------------------------------------

    def gone(self) -> bool:
        return self.identity is None or _identity(self.run_dir) != self.identity

    def check(self) -> None:
        if self.gone():
            raise RunDirGone(f"the run directory {self.run_dir} was deleted or moved while the engine ran; "
                             "stopping without writing anything more")

    # -- heartbeat -----------------------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        if not self.rank0:
            return
        path = self.run_dir / HEARTBEAT
        try:
            with open(path, "a"):
                pass
            os.utime(path)
        except OSError:
            return
        self._thread = threading.Thread(target=self._beat, args=(path,), name="tunetop-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, path: Path) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if self.gone():
                return
            try:
                os.utime(path)      # never creates: a deleted directory stays deleted
            except OSError:
                pass

    def stop_heartbeat(self) -> None:
        self._stop.set()

    # -- room for the end event ----------------------------------------------------------------------------

    def reserve(self) -> None:
        if not self.rank0:
            return
        path = self.run_dir / RESERVE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            pass     # no room even for this: the end event may still fit

    def release_reserve(self) -> None:
        if self.gone():
            return
        try:
            os.unlink(self.run_dir / RESERVE)
        except OSError:
            pass
