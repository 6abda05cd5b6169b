"""Run directories: create them, find them, and say what state each run is in.

    runs/<id>/run.toml          the resolved profile, frozen at launch
    runs/<id>/events.jsonl      the event stream (engine/events.py)
    runs/<id>/engine.log        the engine's stdout and stderr
    runs/<id>/engine.lock       held (flock) by the live engine for its whole life (engine/runlock.py)
    runs/<id>/engine.pid        {"pid": ..., "create_time": ...}: which process to signal, if both match
    runs/<id>/heartbeat         touched by the live engine every 2 s, whatever training is doing
    runs/<id>/segments.json     written by the launcher at each resume: where the newest segment's events
                                begin and the training time before them (so readers need not scan)
    runs/<id>/checkpoints/      resumable checkpoints (checkpoint-N)
    runs/<id>/adapter/          the final adapter (PEFT format), or model/ for a full fine-tune

Run directories are created 0700 (they hold datasets' rows in logs, adapters and configs).

Statuses and elapsed time: engine/runstate.py.

"Alive" is the lock (runlock.is_held), never a comparison of timestamps; a pid is signalled only when
engine.pid names it together with a start time that matches the running process.

Reading is cheap whatever a run's length: a small events file is folded whole; a large one (over
FULL_READ_BYTES) is read at its head (the first start event), at the newest segment's start (from
segments.json) and at its tail (the recent steps, the latest end): constant time and memory per run.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import events as ev
from . import paths, runlock
from .errors import TunetopError

if TYPE_CHECKING:
    from .profile import Profile

# engine.profile (tomllib, the schema, the validator) and psutil are imported where they are needed:
# `tunetop --help` and `tunetop ls` start without them.
from .runstate import ACTIVE, RATE_WINDOW, RunState, hung_after_s, stall_min_s  # noqa: F401 (re-exported)

RUN_TOML = "run.toml"
EVENTS = "events.jsonl"
LOG = "engine.log"
PID = "engine.pid"
HEARTBEAT = "heartbeat"
SEGMENTS = "segments.json"
CHECKPOINTS = "checkpoints"
OUTPUTS = ("adapter", "model")
# Events files up to this size are folded whole (exact counts of backoffs and warnings); larger ones are
# read at head, newest segment start and tail. Small on purpose: `ls` over 200 runs of 2,000 steps each
# folded whole took 12x a plain start/end scan; read at their tails, a fraction of it (bench_ls.py).
FULL_READ_BYTES = 64 << 10
TAIL_LIMIT = 4 << 20        # at most this much of a large file's tail is read


class RunError(TunetopError):
    """A user-facing problem with a run (unknown id, not running, ...): a message and a hint."""


def new_run_id(profile_name: str, root: Path) -> str:
    # Sortable by start time; the profile's name makes `tunetop ls` readable. A counter breaks ties
    # between two launches in the same second.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", profile_name).strip("-") or "run"
    run_id, n = f"{stamp}-{slug}", 1
    while (root / run_id).exists():
        n += 1
        run_id = f"{stamp}-{slug}-{n}"
    return run_id


def create(profile: Profile, root: Path | None = None) -> Path:
    """Make a fresh run directory (mode 0700) holding the frozen profile. RunError if the root is unusable."""
    root = root or paths.runs_root(profile.output.runs_root or None)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            if os.statvfs(root).f_flag & os.ST_RDONLY:
                raise OSError(errno.EROFS, "the file system is read-only")
            raise PermissionError(f"no write permission on {root}")
        run_dir = root / new_run_id(profile.name, root)
        run_dir.mkdir(mode=0o700)
        os.chmod(run_dir, 0o700)   # whatever the umask: logs, adapters and configs may be private
        header = f"# tunetop run {run_dir.name}: the profile as it was resolved at launch ({profile.source}).\n"
        from .profile import dumps
        _write_atomic(run_dir / RUN_TOML, header + dumps(profile))
    except OSError as exc:
        raise RunError(f"cannot create a run directory under {root}: {_why(exc)}",
                       hint="set TUNETOP_HOME or output.runs_root in the profile to a folder you can write") from None
    return run_dir


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return exc.strerror or str(exc)


def load_profile(run_dir: Path) -> Profile:
    from .profile import load
    return load(run_dir / RUN_TOML)


# -- process liveness --------------------------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    from .profile import write_atomic
    write_atomic(path, text)


def write_pid(run_dir: Path, pid: int) -> None:
    import psutil
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    _write_atomic(run_dir / PID, json.dumps({"pid": pid, "create_time": created}))


def read_pid(run_dir: Path) -> dict | None:
    try:
        data = json.loads((run_dir / PID).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def verified_pid(run_dir: Path) -> tuple[int, float] | None:
    """(pid, start time) from engine.pid if that very process is running: the pid file must carry a
    start time and it must match the process's (guards against PID reuse). Says nothing about the lock."""
    import psutil
    info = read_pid(run_dir)
    created = info.get("create_time") if info else None
    if not isinstance(created, (int, float)):
        return None   # a pid without a verified start time is never trusted (nor signalled)
    try:
        proc = psutil.Process(info["pid"])
        if abs(proc.create_time() - created) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return info["pid"], created


def is_alive(run_dir: Path) -> bool:
    """An engine (or a launcher handing over to one) holds the run's lock."""
    return runlock.is_held(run_dir)


def alive_pid(run_dir: Path) -> int | None:
    """The engine's pid to signal: the lock is held and engine.pid names a verified, running process."""
    if not runlock.is_held(run_dir):
        return None
    found = verified_pid(run_dir)
    return found[0] if found else None


def heartbeat_time(run_dir: Path) -> float | None:
    try:
        return os.stat(run_dir / HEARTBEAT).st_mtime
    except OSError:
        return None


def has_output(run_dir: Path) -> bool:
    """The run's final result is on disk (adapter/ or model/, renamed into place whole by the engine)."""
    return any((run_dir / name).is_dir() and any((run_dir / name).iterdir()) for name in OUTPUTS)


# -- state -------------------------------------------------------------------------------------------------

def read_state(run_dir: Path, alive: bool | None = None) -> RunState:
    """The run's state from its directory. Cheap for any events file (see the module docstring).

    `alive` overrides the lock probe (the launcher asks while it holds the lock itself).
    """
    state = RunState(run_id=run_dir.name, path=run_dir)
    path = run_dir / EVENTS
    try:
        size = os.stat(path).st_size
    except OSError:
        size, state.events_missing = 0, True
    seg = read_segments(run_dir)
    state.segment_offset = seg["offset"] if seg and seg["offset"] <= size else None
    if size <= FULL_READ_BYTES:
        for offset, e in ev.iter_events(path):
            state.apply(e)
            if e.get("type") == "end":
                state.end_offset = offset
        state.read_offset = ev.complete_end(path, size)
    else:
        _read_large(state, path, size)
    state.output = has_output(run_dir)
    if state.started is None and not state.ended:   # only then does it matter (interrupted vs failed to start)
        state.checkpointed = _has_checkpoint_folder(run_dir)
    refresh_alive(state, alive)
    if not state.profile:
        state.profile = profile_name(run_dir)
    return state


def _read_large(state: RunState, path: Path, size: int) -> None:
    """Head + newest segment start + tail of a large events file (constant time and memory)."""
    state.partial = True
    first = next((e for _, e in ev.iter_head(path) if e.get("type") == "start"), None)
    seg = read_segments(state.path)
    seg_offset = seg["offset"] if seg and seg["offset"] <= size else 0

    def make_until():   # back to the newest start event, or a full rate window of steps, whichever first
        steps = 0

        def until(e: dict) -> bool:
            nonlocal steps
            steps += e.get("type") == "step"
            return e.get("type") == "start" or steps >= RATE_WINDOW
        return until

    tail, tail_lo, tail_end = ev.read_tail(path, make_until, limit=TAIL_LIMIT)
    if first is not None:
        state.apply(first)
    if seg_offset and seg_offset >= tail_lo:
        # The newest segment starts inside the tail window: fold it from there, exactly.
        state.closed_s, state.segment_start = seg["closed_s"], None
        tail = [(o, e) for o, e in tail if o >= seg_offset]
    else:
        if seg_offset:
            latest = next((e for _, e in ev.iter_head(path, seg_offset) if e.get("type") == "start"), None)
            if latest is not None:
                state.closed_s, state.segment_start = seg["closed_s"], None
                state.apply(latest)
        # The events between the segment's start and the tail window are not read; a start inside the
        # tail (an in-place relaunch) closes the segment at the first event the tail shows.
        if tail:
            state.last_t = tail[0][1].get("t", state.last_t)
    for offset, e in tail:
        if e is first:
            continue
        state.apply(e)
        if e.get("type") == "end":
            state.end_offset = offset
    state.read_offset = tail_end


def _has_checkpoint_folder(run_dir: Path) -> bool:
    """Some checkpoint-N folder exists (cheap: no verification; `resume` verifies)."""
    try:
        with os.scandir(run_dir / CHECKPOINTS) as it:
            return any(e.name.startswith("checkpoint-") and e.is_dir() for e in it)
    except OSError:
        return False


def refresh_alive(state: RunState, alive: bool | None = None) -> None:
    state.alive = is_alive(state.path) if alive is None else alive
    found = verified_pid(state.path) if state.alive else None
    state.alive_since = found[1] if found else None
    state.heartbeat_t = heartbeat_time(state.path) if state.alive else None


# -- segments: where the newest segment's events begin ----------------------------------------------------

def read_segments(run_dir: Path) -> dict | None:
    try:
        data = json.loads((run_dir / SEGMENTS).read_text())
    except (OSError, ValueError):
        return None
    if (isinstance(data, dict) and isinstance(data.get("offset"), int) and data["offset"] >= 0
            and isinstance(data.get("closed_s"), (int, float))):
        return data
    return None


def record_segment(run_dir: Path) -> None:
    """Before an engine is (re)started on the run: note where its events will begin and the training time
    of everything before. Scans only the events since the previous record (once per segment in all).
    Called by the launcher while it holds the run's lock, so no engine appends meanwhile."""
    path = run_dir / EVENTS
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    prev = read_segments(run_dir)
    start = prev["offset"] if prev and prev["offset"] <= size else 0
    state = RunState(run_id=run_dir.name, path=run_dir)
    state.closed_s = prev["closed_s"] if start else 0.0
    for _, e in ev.iter_events(path, start):
        state.apply(e)
    closed = state.closed_s + (max(0.0, state.last_t - state.segment_start)
                               if state.segment_start is not None and state.last_t is not None else 0.0)
    _write_atomic(run_dir / SEGMENTS, json.dumps({"v": 1, "offset": size, "closed_s": round(closed, 3)}))


def profile_name(run_dir: Path) -> str:
    """The run's profile name from run.toml, or "?" when that file is missing or broken."""
    from .profile import ProfileError
    try:
        return load_profile(run_dir).name
    except (ProfileError, TunetopError):
        return "?"


def list_runs(root: Path | None = None) -> list[Path]:
    """Run directories under the root, newest first. Missing root -> []; unreadable root -> RunError."""
    root = root or paths.runs_root()
    try:
        entries = [p for p in root.iterdir() if p.is_dir() and (p / RUN_TOML).exists()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunError(f"cannot read the runs folder {root}: {exc.strerror or exc}") from None
    return sorted(entries, key=lambda p: p.name, reverse=True)


def resolve(ref: str, root: Path | None = None) -> Path:
    """A run from its id, a unique prefix of it, a path to its folder, or `last`."""
    root = root or paths.runs_root()
    as_path = Path(ref).expanduser()
    if as_path.is_dir() and (as_path / RUN_TOML).exists():
        return as_path.resolve()
    runs = list_runs(root)
    if not runs:
        raise RunError(f"there are no runs under {root}", hint="start one with `tunetop run PROFILE`")
    if ref == "last":
        return runs[0]
    exact = [r for r in runs if r.name == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunError(f'no run matches "{ref}" under {root}',
                       hint="`tunetop ls` lists the runs; use `last` for the newest")
    names = ", ".join(r.name for r in matches[:5])
    raise RunError(f'"{ref}" matches {len(matches)} runs ({names}{", ..." if len(matches) > 5 else ""})',
                   hint="type more of the id")


def last_checkpoint(run_dir: Path) -> Path | None:
    from .checkpoints import last_checkpoint  # the newest complete, verified one (engine/checkpoints.py)
    return last_checkpoint(run_dir)


def delete(run_dir: Path) -> None:
    if is_alive(run_dir):
        raise RunError(f"run {run_dir.name} is still running", hint=f"stop it first (`tunetop stop {run_dir.name}`)")
    shutil.rmtree(run_dir)


def disk_use(path: Path) -> int:
    """Bytes on disk under a folder (0 when it is missing); a file that vanishes mid-walk is skipped."""
    total = 0
    try:
        for p in Path(path).rglob("*"):
            try:
                if p.is_file() and not p.is_symlink():
                    total += p.stat().st_size
            except OSError:
                continue
    except OSError:
        return total
    return total


__all__ = ["RunError", "RunState", "ACTIVE", "is_alive", "verified_pid", "record_segment", "create", "read_state",
           "list_runs", "resolve", "alive_pid", "write_pid", "read_pid", "last_checkpoint", "delete", "load_profile",
           "hung_after_s", "stall_min_s", "heartbeat_time", "has_output", "disk_use"]
