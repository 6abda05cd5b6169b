"""Run history helpers shared by `tunetop ls`, `prune`, `rm` and the dashboard's runs filter.

Filters: status (one or several), profile (a glob or a substring), since (a duration such as 2d / 12h / 30m,
or a date 2026-12-01 [T10:00]). Sort keys: started (default, newest first), loss, step, disk, status, profile.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
import time
from datetime import datetime
from pathlib import Path

from engine import rundir
from engine.errors import TunetopError

STATUSES = ("starting", "running", "stalled", "hung", "completed", "stopped", "failed", "interrupted",
            "failed to start")
SORT_KEYS = ("started", "loss", "step", "disk", "status", "profile")


def parse_statuses(text: str | None) -> set[str] | None:
    if not text:
        return None
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    for s in wanted:
        if s not in STATUSES:
            close = difflib.get_close_matches(s, STATUSES, n=1)
            raise TunetopError(f'--status: unknown status "{s}"',
                               f'did you mean "{close[0]}"?' if close else f"use one of: {', '.join(STATUSES)}")
    return wanted


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """A unix time from "2d", "12h", "30m", "45s", "1w" or an ISO date/time. None: no limit."""
    if not text:
        return None
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * scale
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise TunetopError(f'--since: cannot read "{text}"',
                           "give a duration (30m, 12h, 2d, 1w) or a date (2026-12-01 or 2026-12-01T21:00)") from None


def matches(state, statuses: set[str] | None = None, profile: str | None = None, since: float | None = None,
            text: str | None = None) -> bool:
    if statuses and state.status not in statuses:
        return False
    if profile and not (fnmatch.fnmatch(state.profile or "", profile) or profile in (state.profile or "")):
        return False
    if since is not None and (started(state) or 0) < since:
        return False
    if text:
        hay = " ".join(str(v) for v in (state.run_id, state.profile, state.model, state.method, state.status))
        return all(word in hay.lower() for word in text.lower().split())
    return True


def started(state) -> float | None:
    """When a run began: its first start event, else the time in its id (runs that never started)."""
    if state.started:
        return state.started
    m = re.match(r"(\d{8}-\d{6})", state.run_id)
    if m:
        try:
            return time.mktime(time.strptime(m.group(1), "%Y%m%d-%H%M%S"))
        except ValueError:
            return None
    return None


def sort_key(key: str):
    if key not in SORT_KEYS:
        close = difflib.get_close_matches(key, SORT_KEYS, n=1)
        raise TunetopError(f'--sort: unknown key "{key}"',
                           f'did you mean "{close[0]}"?' if close else f"use one of: {', '.join(SORT_KEYS)}")
    big = float("inf")
    return {
        "started": lambda s, d: -(started(s) or 0),
        "loss": lambda s, d: s.loss if s.loss is not None else big,
        "step": lambda s, d: -s.step,
        "disk": lambda s, d: -d,
        "status": lambda s, d: s.status,
        "profile": lambda s, d: s.profile or "",
    }[key]


def checkpoints(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / rundir.CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def prune_plan(run_dir: Path) -> tuple[Path | None, list[Path]]:
    """(the checkpoint kept: the last complete one, the folders to delete). Partial ones newer than the kept
    one are deleted too: they cannot be resumed from."""
    keep = rundir.last_checkpoint(run_dir)
    return keep, [p for p in checkpoints(run_dir) if p != keep]


# -- `tunetop ls` (tuiapp/commands/inspect_cmds.py calls these two) --------------------------------------

def add_ls_arguments(s) -> None:
    s.add_argument("--status", help="only these statuses, comma-separated (completed,failed,...)")
    s.add_argument("--profile", help="only runs of this profile (a name, a part of it, or a glob)")
    s.add_argument("--since", help="only runs started since: 30m, 12h, 2d, 1w or a date (2026-12-01)")
    s.add_argument("--sort", default="started",
                   help=f"{', '.join(SORT_KEYS)} (default started: running first, then newest)")
    s.add_argument("--reverse", action="store_true", help="reverse the order")


def select(states: list, args) -> tuple[list, dict[str, int]]:
    """The runs `ls` shows, in order, and each one's disk use in bytes. Raises TunetopError on a bad filter."""
    statuses = parse_statuses(getattr(args, "status", None))
    since = parse_since(getattr(args, "since", None))
    key = sort_key(getattr(args, "sort", None) or "started")
    shown = [s for s in states if matches(s, statuses, getattr(args, "profile", None), since)]
    disk = {s.run_id: rundir.disk_use(s.path) for s in shown}
    shown.sort(key=lambda s: key(s, disk[s.run_id]), reverse=bool(getattr(args, "reverse", False)))
    if (getattr(args, "sort", None) or "started") == "started":
        shown.sort(key=lambda s: not s.active)   # stable: running first, newest first within each group
    return shown, disk
