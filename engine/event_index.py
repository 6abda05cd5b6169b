"""events.idx: a fixed-size binary record per event line, written by the engine beside events.jsonl, so a
reader can draw a million-step history without parsing a million JSON lines.

events.jsonl stays the one source of truth. The index only says where each line is and, for a step, the
numbers the charts need; a reader uses it only after checking it against the file, and reads whatever
it does not cover (lines no record names, bytes after the last record) from the file itself. A missing,
short, damaged or stale index costs a full scan, never a wrong chart.

One record per line, little-endian, RECORD.size = 64 bytes:

    offset   int64   where the line starts in events.jsonl
    length   int64   its length in bytes, newline included
    step     int64   the step of a step event; -1 for any other event
    tokens   int64   tokens_seen (0 when absent: see flags)
    loss, lr, grad_norm   float64 (0.0 when absent)
    flags    int64   bit k set: field k of (loss, lr, grad_norm, tokens_seen) is not a number in the line

Writing costs one 64-byte append per event; a failed write (a full disk) stops the index, never the events.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

INDEX = "events.idx"
RECORD = struct.Struct("<qqqqdddq")
FIELDS = ("loss", "lr", "grad_norm", "tokens")        # the curves, as the dashboard names them
KEYS = ("loss", "lr", "grad_norm", "tokens_seen")     # their keys in a step event
CHECKS = 8            # records compared with their lines before an index is believed (plus the last one)


def index_path(events_path: str | Path) -> Path:
    return Path(events_path).with_name(INDEX)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record(offset: int, length: int, event: dict) -> bytes:
    """The index record of one event line."""
    step = event.get("step")
    if event.get("type") != "step" or not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return RECORD.pack(offset, length, -1, 0, 0.0, 0.0, 0.0, 0)
    flags, values = 0, []
    for k, key in enumerate(KEYS):
        v = event.get(key)
        if _num(v):
            values.append(v)
        else:
            flags |= 1 << k
            values.append(0)
    loss, lr, grad, tokens = values
    try:
        return RECORD.pack(offset, length, step, int(tokens), float(loss), float(lr), float(grad), flags)
    except (OverflowError, struct.error):   # a number no int64/float64 holds: leave the line to the scan
        return RECORD.pack(offset, length, -1, 0, 0.0, 0.0, 0.0, 0)


class IndexWriter:
    """Appends records; on any OSError it stops for good (readers then scan what it did not cover)."""

    def __init__(self, events_path: Path):
        self._f = None
        try:
            self._f = open(index_path(events_path), "ab")
        except OSError:
            pass

    def add(self, offset: int, length: int, event: dict) -> None:
        if self._f is None:
            return
        try:
            self._f.write(record(offset, length, event))
            self._f.flush()
        except (OSError, ValueError):
            self.close()

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


# -- reading ----------------------------------------------------------------------------------------------

@dataclass
class Covered:
    """What the index says about events.jsonl from `start` on (records checked against the file)."""
    curves: dict[str, tuple]                          # name -> (line offsets, steps, values), file order
    step_events: int
    others: list[tuple[int, int]] = field(default_factory=list)   # (offset, length) of non-step lines
    gaps: list[tuple[int, int]] = field(default_factory=list)     # [a, b) byte ranges no record covers
    end: int = 0                                      # the end of the last record: read on from here


def read(events_path: str | Path, start: int = 0, size: int | None = None) -> Covered | None:
    """The index's records from byte `start` of events.jsonl on, or None when there is no index or it does
    not match the file (then scan the file). `size`: the file's size when the caller already has it."""
    try:
        raw = index_path(events_path).read_bytes()
        size = os.stat(events_path).st_size if size is None else size
    except OSError:
        return None
    n = len(raw) // RECORD.size
    if n == 0:
        return None
    cols = _columns(raw[: n * RECORD.size], n)
    off, length = cols["offset"], cols["length"]
    first = _first_at_or_after(off, start)
    if first is None:
        return None
    if int(off[n - 1]) + int(length[n - 1]) > size or not _monotonic(off, length, first):
        return None
    if not _lines_match(events_path, cols, first, n) or not _line_ends_match(events_path, cols, first):
        return None
    return _covered(cols, first, n, start)


def _line_ends_match(events_path, cols, first: int) -> bool:
    """Every record starts just after a newline and ends with one in the file (one vectorised pass over
    the mapped file: a line inserted, removed or resized anywhere is caught, not only where sampled)."""
    off = cols["offset"]
    if not hasattr(off, "searchsorted"):
        return True          # without numpy the sampled check above is all (the pure-Python path is rare)
    import numpy as np
    o, ln = off[first:], cols["length"][first:]
    try:
        mapped = np.memmap(events_path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return False
    try:
        before = o[o > 0] - 1
        return bool((mapped[o + ln - 1] == 10).all() and (mapped[before] == 10).all())
    except IndexError:
        return False
    finally:
        del mapped


def _columns(raw: bytes, n: int) -> dict:
    names = ("offset", "length", "step", "tokens", "loss", "lr", "grad_norm", "flags")
    try:
        import numpy as np
    except ImportError:   # no numpy: the same columns as lists (slower, same answers)
        rows = list(RECORD.iter_unpack(raw))
        return {name: [r[k] for r in rows] for k, name in enumerate(names)}
    dtype = np.dtype([(name, "<i8" if name not in ("loss", "lr", "grad_norm") else "<f8") for name in names])
    table = np.frombuffer(raw, dtype=dtype, count=n)
    return {name: table[name] for name in names}


def _first_at_or_after(off, start: int) -> int | None:
    if hasattr(off, "searchsorted"):
        i = int(off.searchsorted(start))
    else:
        from bisect import bisect_left
        i = bisect_left(off, start)
    return i if i < len(off) else None


def _monotonic(off, length, first: int) -> bool:
    """Records in file order that never overlap (a gap between two is fine: those lines are read)."""
    if hasattr(off, "searchsorted"):
        o, ln = off[first:], length[first:]
        return bool((ln > 0).all() and (o[1:] >= o[:-1] + ln[:-1]).all())
    return all(length[i] > 0 for i in range(first, len(off))) and \
        all(off[i + 1] >= off[i] + length[i] for i in range(first, len(off) - 1))


def _lines_match(events_path, cols, first: int, n: int) -> bool:
    """A few records (spread over the range, and the last) describe exactly the lines at their offsets."""
    picks = sorted({first + (n - 1 - first) * k // CHECKS for k in range(CHECKS + 1)})
    try:
        with open(events_path, "rb") as f:
            for i in picks:
                offset, length = int(cols["offset"][i]), int(cols["length"][i])
                if offset > 0:
                    f.seek(offset - 1)
                    if f.read(1) != b"\n":
                        return False
                f.seek(offset)
                line = f.read(length)
                if len(line) != length or not line.endswith(b"\n"):
                    return False
                try:
                    event = json.loads(line)
                except ValueError:
                    return False
                if not isinstance(event, dict) or record(offset, length, event) != _packed(cols, i):
                    return False
    except OSError:
        return False
    return True


def _packed(cols, i: int) -> bytes:
    return RECORD.pack(*(int(cols[k][i]) if k not in ("loss", "lr", "grad_norm") else float(cols[k][i])
                         for k in ("offset", "length", "step", "tokens", "loss", "lr", "grad_norm", "flags")))


def _covered(cols, first: int, n: int, start: int) -> Covered:
    off, length, step, flags = cols["offset"], cols["length"], cols["step"], cols["flags"]
    curves: dict[str, tuple] = {}
    if hasattr(off, "searchsorted"):
        import numpy as np
        o, ln, st, fl = off[first:], length[first:], step[first:], flags[first:]
        is_step = st >= 0
        for k, (name, col) in enumerate(zip(FIELDS, ("loss", "lr", "grad_norm", "tokens"))):
            keep = is_step & ((fl & (1 << k)) == 0)
            values = cols[col][first:][keep]
            curves[name] = (o[keep], st[keep], values.astype(np.float64))
        other = ~is_step
        others = list(zip(o[other].tolist(), ln[other].tolist()))
        ends = o + ln
        gap_at = np.flatnonzero(o[1:] > ends[:-1])
        gaps = [(int(ends[i]), int(o[i + 1])) for i in gap_at]
        step_events = int(is_step.sum())
    else:
        curves = {name: ([], [], []) for name in FIELDS}
        others, gaps, step_events = [], [], 0
        for i in range(first, n):
            if i > first and off[i] > off[i - 1] + length[i - 1]:
                gaps.append((off[i - 1] + length[i - 1], off[i]))
            if step[i] < 0:
                others.append((off[i], length[i]))
                continue
            step_events += 1
            for k, (name, col) in enumerate(zip(FIELDS, ("loss", "lr", "grad_norm", "tokens"))):
                if not flags[i] & (1 << k):
                    curves[name][0].append(off[i])
                    curves[name][1].append(step[i])
                    curves[name][2].append(float(cols[col][i]))
    head = int(off[first])
    if head > start:
        gaps.insert(0, (start, head))
    return Covered(curves=curves, step_events=step_events, others=others, gaps=gaps,
                   end=int(off[n - 1]) + int(length[n - 1]))

