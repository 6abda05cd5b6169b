"""All runs under the runs root: which exist (rescanned now and then), in the order the table shows them."""
from __future__ import annotations

import threading
from pathlib import Path

from engine import rundir

from .tracker import RunTracker


class RunRegistry:
    def __init__(self, root: Path):
        self.root = root
        self.trackers: dict[str, RunTracker] = {}
        self.error: str | None = None        # the runs root cannot be read (shown in the runs panel)
        self.lock = threading.Lock()

    def rescan(self) -> bool:
        """Pick up new run folders and drop deleted ones. True if the set changed."""
        try:
            found = {p.name: p for p in self.root.iterdir() if _is_run(p)}
            error = None
        except FileNotFoundError:
            found, error = {}, None           # no run yet: the folder appears with the first one
        except OSError as exc:
            found, error = None, f"cannot read the runs folder {self.root}: {exc.strerror or exc}"
        with self.lock:                       # two workers may rescan at once
            changed = error != self.error
            self.error = error
            if found is None:
                return changed                # keep showing what we had; say what is wrong
            for name in set(self.trackers) - set(found):
                del self.trackers[name]
                changed = True
            for name, path in found.items():
                if name not in self.trackers:
                    self.trackers[name] = RunTracker(path)
                    changed = True
        return changed

    def snapshot(self) -> list[RunTracker]:
        with self.lock:
            return list(self.trackers.values())

    def get(self, run_id: str | None) -> RunTracker | None:
        with self.lock:
            return self.trackers.get(run_id) if run_id else None

    def ordered(self) -> list[RunTracker]:
        """Running first, then newest (ids sort by start time)."""
        runs = sorted(self.snapshot(), key=lambda t: t.run_id, reverse=True)
        return sorted(runs, key=lambda t: not t.view.state.active)

    def views(self) -> dict:
        """Each run's latest published view (what a RunsChanged message carries)."""
        return {t.run_id: t.view for t in self.snapshot()}

    def engine_pids(self) -> dict[int, str]:
        out = {}
        for t in self.snapshot():
            pid = t.engine_pid()
            if pid:
                out[pid] = t.run_id
        return out


def ordered_views(views) -> list:
    """Running first, then newest (ids sort by start time): the runs table's order."""
    runs = sorted(views, key=lambda v: v.run_id, reverse=True)
    return sorted(runs, key=lambda v: not v.state.active)


def _is_run(p: Path) -> bool:
    # A folder with run.toml, or with an event stream whose run.toml went missing (shown with a warning).
    try:
        return p.is_dir() and ((p / rundir.RUN_TOML).exists() or (p / rundir.EVENTS).exists())
    except OSError:
        return False
