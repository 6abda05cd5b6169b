"""The event stream: events.jsonl in a run directory, one JSON object per line.

This is the contract between the engine (writer) and every reader (the dashboard, `tunetop watch`,
your own scripts). Every line carries:

    v      schema version (int, currently 1)
    t      unix time in seconds (float)
    type   one of the types below

Types and their fields (readers must ignore fields and types they do not know):

    start       run_id, profile, model, method, device ("cuda"/"cpu"/...), devices (list of names),
                world_size, micro_batch, grad_accum, effective_batch, total_steps, epochs,
                train_rows, eval_rows, skipped_rows, data_format, precision, resumed_from (step or null)
    step        step, total_steps, epoch, loss, lr, grad_norm, tokens_seen, step_time (s),
                samples_per_s, tokens_per_s, eta_s (engine's own estimate), memory: {cuda_allocated,
                cuda_reserved, cuda_peak, rss} in bytes (CUDA keys absent on CPU)
    eval        step, eval_loss
    backoff     step (0 = the probe before step 1), reason, action (split, gradient_checkpointing,
                shorter_seq_len, grow_back, eval_split, relaunch, exhausted, ...), before and after:
                {micro_batch, grad_accum, gradient_checkpointing, max_seq_len}, message (one sentence),
                split (row chunks per micro-batch), effective_batch; optionally phase, memory, error,
                relaunch, fit_cache
    checkpoint  step, path
    log         level ("info"/"warning"/"error"), message
    end         status ("completed" | "stopped" | "failed"), step, total_steps, error, hint,
                final_loss, runtime_s, adapter_path

Writers append whole lines and flush each; readers tolerate a torn last line (a write in progress or a
crash mid-write) and skip lines that are not JSON objects.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from .event_index import IndexWriter
from .growing_file import GrowingFile

SCHEMA_VERSION = 1
EVENT_TYPES = ("start", "step", "eval", "backoff", "checkpoint", "log", "end")
END_STATUSES = ("completed", "stopped", "failed")


def make(type_: str, **fields: Any) -> dict:
    return {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "type": type_, **fields}


class EventWriter:
    """Appends events to a file. One line per write() call, flushed at once so readers see it live.

    Thread-safe (the stall watchdog and the notifier write from their own threads). `subscribe(fn)` calls
    fn(event) after each line is written (outside the lock; fn must be quick and is never allowed to break
    a write); `on_close` callbacks run in close() while the file is still open (the notifier flushes).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._listeners: list = []
        self._closers: list = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: each whole-line write lands at the end even if someone else appends (a relaunch).
        self._f = open(self.path, "ab")
        # A file that ends in a torn line (the last writer died mid-line) must not swallow our first event.
        if self._f.tell() > 0 and not _ends_with_newline(self.path):
            self._f.write(b"\n")
        # Where each line went, for readers of long histories (engine/event_index.py: events.idx).
        self._index = IndexWriter(self.path)

    def write(self, type_: str, **fields: Any) -> dict:
        event = make(type_, **fields)
        line = (json.dumps(event, separators=(",", ":"), default=_jsonable) + "\n").encode()
        with self._lock:
            self._f.write(line)
            self._f.flush()
            # After an O_APPEND write the position is the end of our line, whoever else appends.
            self._index.add(os.lseek(self._f.fileno(), 0, os.SEEK_CUR) - len(line), len(line), event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener must never break the event stream
                pass
        return event

    def subscribe(self, listener, on_close=None) -> None:
        self._listeners.append(listener)
        if on_close is not None:
            self._closers.append(on_close)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for fn in closers:
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except (OSError, ValueError):
            pass
        self._f.close()
        self._index.close()


# A line longer than this is skipped by every reader (a runaway log message, a corrupt or hostile file):
# no reader ever holds more than about this much of one line in memory.
MAX_LINE_BYTES = 64 << 20
_CHUNK = 1 << 20


def parse_lines(data: bytes) -> tuple[list[dict], int]:
    """Parse complete lines from a chunk; return (events, bytes consumed).

    An unterminated last line is not consumed (it may still be being written); garbage lines are skipped.
    """
    events: list[dict] = []
    end = data.rfind(b"\n")
    if end < 0:
        return events, 0
    for line in data[: end + 1].splitlines():
        event = parse_line(line)
        if event is not None:
            events.append(event)
    return events, end + 1


def parse_line(line: bytes | str) -> dict | None:
    """One event, or None for a line that is blank, not JSON, not an object, nested too deeply or too long."""
    if len(line) > MAX_LINE_BYTES:
        return None
    line = line.strip()
    if not line or line[:1] not in (b"{", "{"):
        return None
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: `{"a":[[[[...` nested thousands deep; the json scanner recurses per level.
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event


def iter_lines(path: str | Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset of the line, the line) for every line from `start` on, streamed in 1 MiB chunks.

    A line over MAX_LINE_BYTES is dropped while it is read (never held whole). The last line is yielded
    even without its newline. A missing file yields nothing.
    """
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        f.seek(start)
        pos, buf, skipping = start, b"", False
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            buf += chunk
            lo = 0
            while True:
                nl = buf.find(b"\n", lo)
                if nl < 0:
                    break
                if not skipping:
                    yield pos + lo, buf[lo:nl]
                skipping = False
                lo = nl + 1
            pos += lo
            buf = buf[lo:]
            if len(buf) > MAX_LINE_BYTES:
                pos, buf, skipping = pos + len(buf), b"", True
        if buf and not skipping:
            yield pos, buf


def iter_events(path: str | Path, start: int = 0) -> Iterator[tuple[int, dict]]:
    """(offset, event) for every well-formed event from `start` on, streamed (constant memory)."""
    for offset, line in iter_lines(path, start):
        event = parse_line(line)
        if event is not None:
            yield offset, event


def read_all(path: str | Path) -> list[dict]:
    """Every complete, well-formed event in the file (missing file -> []). Streams; skips oversized lines.

    A final line without "\n" is normally torn, but if it parses it was written whole (tests, other tools).
    """
    return [e for _, e in iter_events(path)]


def read_tail(path: str | Path, make_until=None, first: int = 16 << 10,
              limit: int = 8 << 20) -> tuple[list[tuple[int, dict]], int, int]:
    """The events at the end of the file, read backwards: ([(offset, event), ...] in file order,
    offset of the oldest line taken, offset just past the last event read).

    Lines are parsed newest first. `make_until()` gives a predicate called on each event (newest first);
    when it returns True the events from that one on are returned. Without it, or while it is not yet
    satisfied, the window (`first` bytes from the end) doubles up to `limit` bytes or the start of the file:
    time and memory depend on `limit`, never on the file's length. A line cut by the window's start is
    dropped; so is a line longer than the window.
    """
    try:
        f = open(path, "rb")
    except OSError:
        return [], 0, 0
    with f:
        size = os.fstat(f.fileno()).st_size
        want = min(first, limit)
        while True:
            lo = max(0, size - want)
            f.seek(lo)
            data = f.read(size - lo)
            last_nl = data.rfind(b"\n")
            end = lo + last_nl + 1
            if last_nl < len(data) - 1:   # an unterminated last line: kept only if it parses (written whole)
                tail_event = parse_line(data[last_nl + 1:])
            else:
                tail_event = None
            until = make_until() if make_until else None
            newest_first: list[tuple[int, dict]] = []
            satisfied = False
            if tail_event is not None:
                newest_first.append((end, tail_event))
                end = size
                satisfied = bool(until and until(tail_event))
            floor = 0 if lo == 0 else data.find(b"\n") + 1   # the first line may be cut: skip it
            hi = last_nl
            oldest = lo + (last_nl + 1 if last_nl >= 0 else len(data))
            while not satisfied and hi > 0 and (lo == 0 or floor > 0) and hi >= floor:
                start = data.rfind(b"\n", floor, hi) + 1 if hi > floor else floor
                start = max(start, floor)
                event = parse_line(data[start:hi])
                oldest = lo + start
                if event is not None:
                    newest_first.append((lo + start, event))
                    satisfied = bool(until and until(event))
                if start <= floor:
                    break
                hi = start - 1
            if satisfied or lo == 0 or want >= limit:
                newest_first.reverse()
                return newest_first, (newest_first[0][0] if newest_first else oldest), max(end, lo)
            want = min(want * 2, limit)


def complete_end(path: str | Path, size: int) -> int:
    """Offset just past the last newline in the file's first `size` bytes (where a live reader continues:
    a line still being written is read once it is whole)."""
    if size <= 0:
        return 0
    try:
        with open(path, "rb") as f:
            lo = size
            while lo > 0:
                step = min(64 << 10, lo)
                lo -= step
                f.seek(lo)
                nl = f.read(step).rfind(b"\n")
                if nl >= 0:
                    return lo + nl + 1
    except OSError:
        return 0
    return 0


def iter_head(path: str | Path, start: int = 0, limit: int = 1 << 20) -> Iterator[tuple[int, dict]]:
    """(offset, event) for the events in the `limit` bytes from `start`, parsed lazily in 64 KiB reads:
    a caller that stops at the first start event reads one block. A line cut by the window's end is dropped."""
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        f.seek(start)
        pos, buf, left = start, b"", limit
        while left > 0:
            chunk = f.read(min(64 << 10, left))
            if not chunk:
                if buf:   # the file's own last line, unterminated
                    event = parse_line(buf)
                    if event is not None:
                        yield pos, event
                return
            left -= len(chunk)
            buf += chunk
            lo = 0
            while (nl := buf.find(b"\n", lo)) >= 0:
                event = parse_line(buf[lo:nl])
                if event is not None:
                    yield pos + lo, event
                lo = nl + 1
            pos, buf = pos + lo, buf[lo:]


def read_head(path: str | Path, start: int = 0, limit: int = 1 << 20) -> list[tuple[int, dict]]:
    """The events in the first `limit` bytes from `start` (a line cut by the window's end is dropped)."""
    return list(iter_head(path, start, limit))


class EventTail:
    """Incremental reader: each poll() returns the events appended since the last one.

    A GrowingFile (engine/growing_file.py) underneath: chunks from a saved offset, whole lines only, and a fresh
    start when the file is truncated or replaced. `offset` may be set to continue after a fast scan.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = GrowingFile(self.path)

    @property
    def offset(self) -> int:
        return self._file.offset

    @offset.setter
    def offset(self, value: int) -> None:
        self._file.offset = value

    def poll(self, max_bytes: int = 64 << 20) -> list[dict]:
        chunk = self._file.read(max_bytes)
        if chunk is None:
            return []
        return [e for e in map(parse_line, chunk.lines) if e is not None]


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _jsonable(obj: Any):
    # numpy / torch scalars and paths end up in events; write them as plain values.
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
