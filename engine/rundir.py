"""Run directories: create them, find them, and say what state each run is in.

    runs/<id>/run.toml          the resolved profile, frozen at launch
    runs/<id>/events.jsonl      the event stream (engine/events.py)
    runs/<id>/engine.log        the engine's stdout and stderr
    runs/<id>/engine.pid        {"pid": ..., "create_time": ...}: alive only if both still match
    runs/<id>/checkpoints/      resumable checkpoints (checkpoint-N)
    runs/<id>/adapter/          the final adapter (PEFT format), or model/ for a full fine-tune
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import events as ev
from .errors import TunetopError
from . import paths
from .profile import Problem, Profile, ProfileError, dumps, write_atomic

RUN_TOML = "run.toml"
EVENTS = "events.jsonl"
LOG = "engine.log"
PID = "engine.pid"
CHECKPOINTS = "checkpoints"

ACTIVE = ("starting", "running")
RATE_WINDOW = 30  # step events used for the current speed


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
    """Make a fresh run directory holding the frozen profile. Raises RunError if the root is unusable."""
    root = root or paths.runs_root(profile.output.runs_root or None)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(f"no write permission on {root}")
        run_dir = root / new_run_id(profile.name, root)
        run_dir.mkdir()
        header = f"# tunetop run {run_dir.name}: the profile as it was resolved at launch ({profile.source}).\n"
        write_atomic(run_dir / RUN_TOML, header + dumps(profile))
    except OSError as exc:
        raise RunError(f"cannot create a run directory under {root}: {exc.strerror or exc}",
                       hint="set TUNETOP_HOME or output.runs_root in the profile to a folder you can write") from None
    return run_dir


def load_profile(run_dir: Path) -> Profile:
    from .profile import load
    return load(run_dir / RUN_TOML)


# -- process liveness --------------------------------------------------------------------------------------

def write_pid(run_dir: Path, pid: int) -> None:
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    write_atomic(run_dir / PID, json.dumps({"pid": pid, "create_time": created}))


def read_pid(run_dir: Path) -> dict | None:
    try:
        data = json.loads((run_dir / PID).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def alive_pid(run_dir: Path) -> int | None:
    """The engine's pid if that very process is still running (guards against PID reuse)."""
    info = read_pid(run_dir)
    if not info:
        return None
    try:
        proc = psutil.Process(info["pid"])
        if info.get("create_time") is not None and abs(proc.create_time() - info["create_time"]) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return info["pid"]


# -- state -------------------------------------------------------------------------------------------------

@dataclass
class RunState:
    """What the events say about a run, folded incrementally (the dashboard feeds it live)."""
    run_id: str
    path: Path
    profile: str = ""
    model: str = ""
    method: str = ""
    total_steps: int | None = None
    step: int = 0
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    micro_batch: int | None = None
    grad_accum: int | None = None
    started: float | None = None      # first start event (the run's own beginning)
    segment_start: float | None = None  # latest start event (after a resume)
    last_t: float | None = None
    ended: dict | None = None         # the end event of the latest segment
    last_step: dict | None = None
    backoffs: int = 0
    warnings: list[str] = field(default_factory=list)
    alive: bool = False
    alive_since: float | None = None   # the live engine's process start time
    # (t, step, tokens_seen) of recent step events: speeds and ETA come from event timestamps, so they are
    # right after a reattach too (a progress bar's own clock would start at zero).
    recent: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))

    def apply(self, e: dict) -> None:
        t, kind = e.get("t"), e.get("type")
        if isinstance(t, (int, float)):
            self.last_t = t
        if kind == "start":
            self.started = self.started or t
            self.segment_start = t
            self.ended = None
            self.recent.clear()  # a resume starts a new timing segment
            for key in ("profile", "model", "method", "total_steps", "micro_batch", "grad_accum"):
                if e.get(key) is not None:
                    setattr(self, key, e[key])
        elif kind == "step":
            self.last_step = e
            self.step = _int(e.get("step"), self.step)
            if isinstance(t, (int, float)):
                self.recent.append((t, self.step, _int(e.get("tokens_seen"), 0)))
            self.total_steps = _int(e.get("total_steps"), self.total_steps)
            self.loss = _float(e.get("loss"), self.loss)
            self.lr = _float(e.get("lr"), self.lr)
            self.epoch = _float(e.get("epoch"), self.epoch)
        elif kind == "eval":
            self.eval_loss = _float(e.get("eval_loss"), self.eval_loss)
        elif kind == "backoff":
            self.backoffs += 1
            after = e.get("after") or {}
            self.micro_batch = after.get("micro_batch", self.micro_batch)
            self.grad_accum = after.get("grad_accum", self.grad_accum)
        elif kind == "log" and e.get("level") in ("warning", "error"):
            self.warnings.append(str(e.get("message", "")))
        elif kind == "end":
            self.ended = e
            self.step = _int(e.get("step"), self.step)

    @property
    def status(self) -> str:
        if self.alive and not self._ended_by_live_process:
            return "running" if self.segment_start and not self.ended else "starting"
        if self.ended:
            status = self.ended.get("status")
            return status if status in ev.END_STATUSES else "failed"
        # No end event and no live process: the engine died (kill -9, power loss, OOM killer).
        return "interrupted" if self.started else "failed to start"

    @property
    def _ended_by_live_process(self) -> bool:
        # An engine that wrote `end` may take a moment to exit; the run is over all the same. An end event
        # older than the live process belongs to an earlier segment (the process is a resume).
        return bool(self.ended) and self.alive_since is not None and self.ended.get("t", 0) >= self.alive_since

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def steps_per_s(self) -> float | None:
        if len(self.recent) < 2:
            return None
        (t0, s0, _), (t1, s1, _) = self.recent[0], self.recent[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    @property
    def tokens_per_s(self) -> float | None:
        if len(self.recent) < 2:
            return None
        (t0, _, k0), (t1, _, k1) = self.recent[0], self.recent[-1]
        return (k1 - k0) / (t1 - t0) if t1 > t0 and k1 > k0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.steps_per_s
        if not rate or not self.total_steps or not self.active:
            return None
        return max(0.0, (self.total_steps - self.step) / rate)

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        end = time.time() if self.alive else (self.last_t or self.started)
        return max(0.0, end - self.started)


def read_state(run_dir: Path) -> RunState:
    state = RunState(run_id=run_dir.name, path=run_dir)
    for e in ev.read_all(run_dir / EVENTS):
        state.apply(e)
    refresh_alive(state)
    if not state.profile:
        state.profile = profile_name(run_dir)
    return state


def refresh_alive(state: RunState) -> None:
    pid = alive_pid(state.path)
    state.alive = pid is not None
    state.alive_since = (read_pid(state.path) or {}).get("create_time") if pid else None


def profile_name(run_dir: Path) -> str:
    """The run's profile name from run.toml, or "?" when that file is missing or broken."""
    try:
        return load_profile(run_dir).name
    except ProfileError:
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
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return None
    ckpts = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").exists()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


def delete(run_dir: Path) -> None:
    if alive_pid(run_dir) is not None:
        raise RunError(f"run {run_dir.name} is still running", hint=f"stop it first (`tunetop stop {run_dir.name}`)")
    shutil.rmtree(run_dir)


def _int(v, default):
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _float(v, default):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


__all__ = ["RunError", "RunState", "create", "read_state", "list_runs", "resolve", "alive_pid", "write_pid",
           "read_pid", "last_checkpoint", "delete", "load_profile", "Problem"]
