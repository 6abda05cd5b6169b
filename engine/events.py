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
        self._f = open(self.path, "a", encoding="utf-8")
        # A file that ends in a torn line (the last writer died mid-line) must not swallow our first event.
        if self._f.tell() > 0 and not _ends_with_newline(self.path):
            self._f.write("\n")

    def write(self, type_: str, **fields: Any) -> dict:
        event = make(type_, **fields)
        line = json.dumps(event, separators=(",", ":"), default=_jsonable) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
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
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event


def read_all(path: str | Path) -> list[dict]:
    """Every complete, well-formed event in the file (missing file -> [])."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    events, _ = parse_lines(data)
    # A final line without "\n" is normally torn, but if it parses it was written whole (tests, other tools).
    tail = data[data.rfind(b"\n") + 1:]
    last = parse_line(tail) if tail.strip() else None
    if last is not None:
        events.append(last)
    return events


class EventTail:
    """Incremental reader: each poll() returns the events appended since the last one.

    Reads in chunks from a saved offset; starts over when the file shrank (truncated or replaced).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._ino: int | None = None

    def poll(self, max_bytes: int = 64 << 20) -> list[dict]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self.offset = 0
        self._ino = st.st_ino
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(max_bytes)
        except OSError:
            return []
        events, used = parse_lines(data)
        self.offset += used
        return events


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _jsonable(obj: Any):
    # numpy / torch scalars and paths end up in events; write them as plain values.
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
