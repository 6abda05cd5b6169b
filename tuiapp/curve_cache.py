"""What a reattach already read of a long run, kept so the next one reads only what was appended since.

After the dashboard has scanned a big events.jsonl (scan.py), it saves the binned curves (Series, at most
MAX_BINS bins each: kilobytes, whatever the run's length), the non-step events it found (few: start, eval,
checkpoint, backoff, log, end) with their byte offsets, and the byte offset it read up to. The next
reattach loads that, scans only the bytes after the offset, and folds exactly what a full scan would have:
the same events, the same curves, the same last step events (read from the file's end).

events.jsonl stays the one source of truth: the saved copy is used only while it provably describes the
same file (same device and inode, at least as long, and the same bytes at its head and just before the
offset); otherwise, or if it cannot be read, it is ignored and the file is scanned whole. It lives in
tunetop's data folder (paths.data_home(), beside the fit cache), never in the run directory, which belongs
to the engine; deleting it costs one full scan.

Why here and not a sidecar written by the engine: the first open of a run no dashboard has seen still
scans it all (tests/bench/bench_reattach.py prints both figures).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine import paths

from .series import Series

FORMAT = 1
MIN_BYTES = 4 << 20          # smaller files scan in well under a tenth of a second: not worth a file
MAX_EVENTS = 200_000         # a run logging a warning per step: its events are not "few"; not cached
PRINT_BYTES = 4096           # bytes hashed at the head and before the offset
MAX_FILES = 256              # saved readings kept (the oldest go first): runs deleted since leave theirs


@dataclass
class Cached:
    offset: int
    curves: dict[str, Series]
    evals: Series
    events: list[tuple[int, dict]]
    corrupt: int
    step_events: int


def folder() -> Path:
    return paths.data_home() / "curve-cache"


def cache_file(events_path: Path) -> Path:
    key = hashlib.sha1(str(Path(events_path).resolve()).encode()).hexdigest()[:20]
    return folder() / f"{key}.json"


def _prints(f, offset: int) -> tuple[str, str]:
    f.seek(0)
    head = hashlib.sha1(f.read(min(PRINT_BYTES, offset))).hexdigest()
    f.seek(max(0, offset - PRINT_BYTES))
    before = hashlib.sha1(f.read(min(PRINT_BYTES, offset))).hexdigest()
    return head, before


def load(events_path: Path) -> Cached | None:
    """The saved reading of this file, if there is one and it still describes the file; else None."""
    try:
        raw = json.loads(cache_file(events_path).read_text())
        if raw.get("format") != FORMAT or raw.get("path") != str(Path(events_path).resolve()):
            return None
        offset = raw["offset"]
        with open(events_path, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != (raw["dev"], raw["ino"]) or st.st_size < offset:
                return None
            if _prints(f, offset) != (raw["head"], raw["before"]):
                return None
        return Cached(offset=offset, curves={k: Series.from_state(v) for k, v in raw["curves"].items()},
                      evals=Series.from_state(raw["evals"]), events=[(int(o), e) for o, e in raw["events"]],
                      corrupt=int(raw["corrupt"]), step_events=int(raw["step_events"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None      # none yet, or damaged: the full scan is always right


def save(events_path: Path, offset: int, curves: dict[str, Series], evals: Series,
         events: list[tuple[int, dict]], corrupt: int, step_events: int) -> bool:
    """Save a reading that covers events_path up to offset (whole lines). False if not worth it or failed."""
    if offset < MIN_BYTES or len(events) > MAX_EVENTS:
        return False
    try:
        with open(events_path, "rb") as f:
            st = os.fstat(f.fileno())
            head, before = _prints(f, offset)
        data = {"format": FORMAT, "path": str(Path(events_path).resolve()), "dev": st.st_dev, "ino": st.st_ino,
                "offset": offset, "head": head, "before": before,
                "curves": {k: s.state() for k, s in curves.items()}, "evals": evals.state(),
                "events": events, "corrupt": corrupt, "step_events": step_events}
        target = cache_file(events_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: a reader sees the old file or the new one (another dashboard may be reading it).
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".curves-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(data, separators=(",", ":")))   # dumps: C speed (dump is pure Python)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(target.parent)
        return True
    except (OSError, TypeError, ValueError):
        return False     # a read-only or full disk: the next reattach scans again, nothing worse


def _prune(where: Path) -> None:
    """Keep the MAX_FILES most recently saved readings (a deleted run's is never read again)."""
    try:
        files = sorted(where.glob("*.json"), key=lambda f: f.stat().st_mtime)
        for old in files[:-MAX_FILES]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
