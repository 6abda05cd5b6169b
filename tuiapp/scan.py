"""Read a whole events.jsonl fast: what reattaching to a long run needs.

json.loads on every line costs 15-30 us on the 2-core dev machine, so a million step events take 15-30 s.
The charts need five numbers per step event (step, loss, lr, grad_norm, tokens_seen), and the engine writes
step events in one fixed field order (engine/train/callbacks.py: v, t, type, step, total_steps, epoch, loss,
lr, grad_norm, tokens_seen, ...), so one regular expression pulls those five out of every canonical step line
at C speed, and map(int/float) converts them a column at a time. Everything else is parsed properly:
- other event types (start, eval, log, backoff, checkpoint, end, or unknown) are rare: each is found by a
  literal search and parsed with json.loads;
- a chunk holding a step line the expression does not fit (another writer's spacing or field order, a null
  loss) or a line that is not an event (garbage, a torn write) is parsed line by line with json.loads:
  slower, never wrong; a null lr or grad_norm (no clipping) stays on the fast path and is left out;
- the last step events (what the current state and speeds need) are parsed in full.
sample() reads ~1,000 step lines at evenly spaced offsets: a preview of the whole curve in milliseconds.

Measured with tests/bench/bench_reattach.py (see its docstring for the figures).
"""
from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Callable

from engine import event_index
from engine.events import parse_line

# Bytes per read. Small on purpose: re.findall holds the GIL for its whole call, so the UI thread gets a
# turn only between chunks; 512 KiB is about ten milliseconds of regex work.
CHUNK = 512 << 10
TAIL_STEPS = 64          # step events parsed in full at the end (speeds use the last 30)
TAIL_BYTES = 256 << 10

# A canonical step line, found by its literal prefix: groups 1-5 step, loss, lr, grad_norm, tokens_seen.
# The number patterns are loose (`[^,]*`, about twice as fast as a strict number grammar in the regex
# engine): float() and int() are the check, and a capture that is not a number sends the chunk to the slow
# path.
_STEP_LINE = re.compile(
    rb'"type":"step","step":(\d+),"total_steps":[^,]*,"epoch":[^,]*,'
    rb'"loss":([^,]*),"lr":([^,]*),"grad_norm":([^,]*),"tokens_seen":(\d+)[,}]')
# The type of every other line (rare: start, eval, log, backoff, checkpoint, end, or unknown).
_OTHER = re.compile(rb'"type":"(?!step")([A-Za-z0-9_]*)"')

_FIELDS = ("loss", "lr", "grad_norm", "tokens")   # the curves a step event feeds, by step (tracker.CURVES)
_STEP = itemgetter(0)
_VALUES = tuple(itemgetter(k) for k in range(1, 5))
_OFFSET = itemgetter(0)

# on_points(name, steps, values): one curve's points of a chunk, in file order.
OnPoints = Callable[[str, array, array], None]


@dataclass
class Scan:
    offset: int = 0                                   # bytes consumed (whole lines only)
    events: list[tuple[int, dict]] = field(default_factory=list)   # non-step events with their byte offset
    tail_steps: list[tuple[int, dict]] = field(default_factory=list)  # the last step events, in full
    step_events: int = 0
    corrupt: int = 0                                  # lines that are not events (garbage, torn writes)
    torn_tail: bytes = b""                            # an unterminated last line, if any


def scan(path: Path, on_points: OnPoints, start: int = 0, cancelled: Callable[[], bool] = lambda: False,
         tail_start: int | None = None) -> Scan:
    """Scan events.jsonl from `start`; each curve's (steps, values) go to on_points in file order, chunk by
    chunk: "loss", "lr", "grad_norm" and "tokens" (tokens_seen). The last step events are read back to
    tail_start (default `start`; 0 when the part before `start` was read earlier, see curve_cache).

    Where the engine's index (engine/event_index.py) covers the file and checks out against it, its records
    give the step numbers and the other lines' places, and only what it does not cover is read here."""
    result = Scan(offset=start)
    covered = event_index.read(path, start)
    with open(path, "rb") as f:
        rest = _from_index(f, covered, start, result, on_points, cancelled) if covered is not None else start
        result.offset, result.torn_tail = _read_range(f, rest, None, result, on_points, cancelled)
    result.events.sort(key=_OFFSET)   # found kind by kind: back into file order
    result.tail_steps = _tail_steps(path, result.offset, start if tail_start is None else tail_start)
    return result


def _from_index(f, covered: event_index.Covered, start: int, result: Scan, on_points: OnPoints,
                cancelled: Callable[[], bool]) -> int:
    """Feed the index's points, reading the byte ranges it skips in between (in file order); returns where
    the index ends."""
    result.step_events += covered.step_events
    cursor = start
    for a, b in [*covered.gaps, (covered.end, covered.end)]:
        for name, (offsets, steps, values) in covered.curves.items():
            i, j = _between(offsets, cursor, a)
            if j > i:
                on_points(name, steps[i:j], values[i:j])
        if b > a:
            _, torn = _read_range(f, a, b, result, on_points, cancelled)
            if torn.strip():
                result.corrupt += 1
        cursor = b
    for offset, length in covered.others:
        f.seek(offset)
        event = parse_line(f.read(length).rstrip(b"\n"))
        if event is None:
            result.corrupt += 1
        else:
            result.events.append((offset, event))
    return covered.end


def _between(offsets, lo: int, hi: int) -> tuple[int, int]:
    if hasattr(offsets, "searchsorted"):
        return int(offsets.searchsorted(lo)), int(offsets.searchsorted(hi))
    return bisect_left(offsets, lo), bisect_left(offsets, hi)


def _read_range(f, begin: int, stop: int | None, result: Scan, on_points: OnPoints,
                cancelled: Callable[[], bool]) -> tuple[int, bytes]:
    """Scan whole lines from `begin` to `stop` (None: the end of the file). Returns (the offset after the
    last whole line, the unfinished bytes after it)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    f.seek(begin)
    held = 0                                      # bytes of an unfinished line kept at buf[0:held]
    pos = begin                                   # file offset of buf[0]
    while not cancelled():
        if held == len(buf):                      # one line longer than the buffer: make room
            buf.extend(bytes(len(buf)))
            view.release()
            view = memoryview(buf)
        want = len(buf) - held if stop is None else min(len(buf) - held, stop - pos - held)
        if want <= 0:
            break
        got = f.readinto(view[held:held + want])
        if not got:
            break
        size = held + got
        end = buf.rfind(b"\n", 0, size) + 1
        if end:
            _scan_chunk(buf, end, pos, result, on_points)
            pos += end
        # Keep the unfinished last line for the next read (reads into the buffer, no new bytes objects).
        buf[0:size - end] = buf[end:size]
        held = size - end
    torn = bytes(buf[:held])
    view.release()
    return pos, torn


def _scan_chunk(buf: bytearray, end: int, base: int, result: Scan, on_points: OnPoints) -> None:
    found = _STEP_LINE.findall(buf, 0, end)
    others = _OTHER.findall(buf, 0, end)
    # Every line must be a canonical step line or carry a compact `"type":"` of another kind; if not (garbage,
    # a torn write, another writer's spacing or field order), or a number is not one (a null loss), this
    # chunk is parsed the slow, sure way.
    columns = _columns(found) if len(found) + len(others) == buf.count(b"\n", 0, end) else None
    if columns is None:
        _scan_slow(bytes(buf[:end]), base, result, on_points)
        return
    for name, (steps, values) in zip(_FIELDS, columns):
        on_points(name, steps, values)
    result.step_events += len(found)
    for kind in set(others):
        _parse_kind(buf, end, base, kind, result)


def _columns(found: list[tuple[bytes, ...]]) -> list[tuple[array, array]] | None:
    """(steps, values) of each curve from the step lines' captures, or None if one is not a number."""
    if not found:
        return []
    # Every loop here runs in C (map, itemgetter, array): the per-line cost of a reattach.
    try:
        steps = array("q", map(int, map(_STEP, found)))
        out = []
        for k, column in enumerate(_VALUES):
            try:
                out.append((steps, array("d", map(float, map(column, found)))))
            except ValueError:
                if k not in (1, 2):
                    raise
                # lr / grad_norm not logged (e.g. no clipping): those steps are left out of that curve.
                raw = list(map(column, found))
                keep = [i for i, v in enumerate(raw) if v != b"null"]
                out.append((array("q", [steps[i] for i in keep]), array("d", [float(raw[i]) for i in keep])))
    except ValueError:           # a null or string loss, or not a number at all: the slow path decides
        return None
    return out


def _parse_kind(data: bytearray, limit: int, base: int, kind: bytes, result: Scan) -> None:
    needle = b'"type":"' + kind + b'"'
    i = data.find(needle, 0, limit)
    while i >= 0:
        start = data.rfind(b"\n", 0, i) + 1
        end = data.find(b"\n", i, limit)
        event = parse_line(bytes(data[start:end]))
        if event is None:
            result.corrupt += 1
        elif event["type"] == kind.decode():
            result.events.append((base + start, event))
        i = data.find(needle, end, limit)


def step_points(event: dict) -> list[tuple[str, float]]:
    """The curves' values in one parsed step event (those that are numbers): the one rule for every reader."""
    out = []
    if isinstance(event.get("step"), int) and not isinstance(event.get("step"), bool):
        for name, key in zip(_FIELDS, _KEYS):
            v = event.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((name, float(v)))
    return out


_KEYS = ("loss", "lr", "grad_norm", "tokens_seen")


def _scan_slow(data: bytes, base: int, result: Scan, on_points: OnPoints) -> None:
    cols = {name: (array("q"), array("d")) for name in _FIELDS}
    pos = 0
    for line in data.split(b"\n")[:-1]:
        event = parse_line(line)
        if event is None:
            if line.strip():
                result.corrupt += 1
        elif event["type"] == "step":
            result.step_events += 1
            for name, v in step_points(event):
                steps, values = cols[name]
                steps.append(event["step"])
                values.append(v)
        else:
            result.events.append((base + pos, event))
        pos += len(line) + 1
    for name, (steps, values) in cols.items():
        on_points(name, steps, values)


def _tail_steps(path: Path, end: int, start: int) -> list[tuple[int, dict]]:
    begin = max(start, end - TAIL_BYTES)
    with open(path, "rb") as f:
        f.seek(begin)
        data = f.read(end - begin)
    lines = data.split(b"\n")
    offsets, pos = [], begin
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    out: list[tuple[int, dict]] = []
    # Walk back from the end. Started mid-file, the first piece may be the end of a line, not a line.
    for k in range(len(lines) - 1, 0 if begin > start else -1, -1):
        event = _step_event(lines[k])
        if event is not None:
            out.append((offsets[k], event))
            if len(out) >= TAIL_STEPS:
                break
    out.reverse()
    return out


def _step_event(line: bytes) -> dict | None:
    # `"step"` is in every step line whatever the writer's spacing; parse only those, keep true step events.
    if b'"step"' not in line:
        return None
    event = parse_line(line)
    return event if event is not None and event["type"] == "step" else None


def first_step_after(path: Path, offset: int, limit: int = 1 << 20) -> dict | None:
    """The first step event at or after a byte offset (the start of the latest segment)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except OSError:
        return None
    for line in data.split(b"\n")[:-1]:
        event = _step_event(line)
        if event is not None:
            return event
    return None


def sample(path: Path, size: int, points: int = 1024) -> list[dict]:
    """About `points` step events read at evenly spaced byte offsets, in file order.

    A preview of the whole run in milliseconds, whatever the file's size: the dashboard draws its curves at
    once on reattach and replaces them with the exact ones when scan() is done.
    """
    out: list[dict] = []
    try:
        with open(path, "rb") as f:
            for k in range(points):
                f.seek(size * k // points)
                data = f.read(2048)          # a step line is ~400 bytes; a miss just skips this point
                pieces = data.split(b"\n")[1 if k else 0:-1]   # whole lines only
                event = next((e for e in map(_step_event, pieces) if e is not None), None)
                if event is not None and (not out or event.get("step") != out[-1].get("step")):
                    out.append(event)
    except OSError:
        pass
    return out
