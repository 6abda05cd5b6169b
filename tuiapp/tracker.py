"""One run as the dashboard sees it: the folded state, the loss curve, notable events and the log tail.

A worker thread loads and polls trackers; the UI thread reads them. Everything the UI reads sits in a
RunData object that the worker swaps in whole after a (re)load, and mutates only under `lock`.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path
from typing import Callable

from engine import rundir
from engine.events import EVENT_TYPES, SCHEMA_VERSION, parse_line
from engine.rundir import RunState

from .logtail import LogTail
from .scan import first_step_after, sample, scan
from .series import Series

PREVIEW_BYTES = 4 << 20     # above this, a sampled preview of the curve is drawn before the exact scan
POLL_MAX = 4 << 20          # a backlog bigger than this is read with the fast scan (a full reload)
ALIVE_EVERY_S = 2.0        # a pid check each 2 s: how soon a killed engine shows as interrupted


class RunData:
    """Everything shown about a run, folded from its events."""

    def __init__(self, run_dir: Path):
        self.state = RunState(run_id=run_dir.name, path=run_dir)
        self.loss = Series()
        self.evals = Series()
        self.notes: deque[tuple[str, str]] = deque(maxlen=50)   # (level, message): backoffs, warnings, errors
        self.seg_first: tuple[float, int, int] | None = None    # (t, step, tokens) of the segment's first step
        self.device: str | None = None
        self.precision: str | None = None
        self.effective_batch: int | None = None
        self.cuda_peak: int | None = None
        self.rss: int | None = None
        self.corrupt = 0
        self.unknown_types: set[str] = set()
        self.schemas: set = set()
        self.torn = False
        self.preview = False          # the loss curve is a sample; the exact scan is running
        self.loaded = False

    def apply(self, e: dict, chart: bool = True) -> None:
        self.state.apply(e)
        kind, v = e.get("type"), e.get("v")
        if v != SCHEMA_VERSION:
            self.schemas.add(v)
        if kind == "step":
            step, loss = e.get("step"), e.get("loss")
            if chart and isinstance(step, int) and _num(loss):
                self.loss.add(step, float(loss))
            if self.seg_first is None and _num(e.get("t")) and isinstance(step, int):
                self.seg_first = (e["t"], step, _int(e.get("tokens_seen")))
            mem = e.get("memory") if isinstance(e.get("memory"), dict) else {}
            if _num(mem.get("cuda_peak")):
                self.cuda_peak = max(self.cuda_peak or 0, int(mem["cuda_peak"]))
            if _num(mem.get("rss")):
                self.rss = int(mem["rss"])
        elif kind == "eval":
            if chart and isinstance(e.get("step"), int) and _num(e.get("eval_loss")):
                self.evals.add(e["step"], float(e["eval_loss"]))
        elif kind == "start":
            self.seg_first = None
            self.device = e.get("device") or self.device
            self.precision = e.get("precision") or self.precision
            self.effective_batch = e.get("effective_batch") or self.effective_batch
        elif kind == "backoff":
            # The effective batch is unchanged by design (the step is split, the batch stays).
            self.notes.append(("warning", f"backoff at step {e.get('step', '?')}: " + _backoff_text(e)))
        elif kind == "log":
            if e.get("level") in ("warning", "error"):
                self.notes.append((e["level"], str(e.get("message", ""))))
        elif kind == "end":
            if e.get("status") == "failed":
                hint = f" (hint: {e['hint']})" if e.get("hint") else ""
                self.notes.append(("error", f"failed: {e.get('error')}{hint}"))
        elif kind not in EVENT_TYPES:
            self.unknown_types.add(str(kind))

    # -- derived figures -----------------------------------------------------------------------------------

    def avg_rates(self) -> tuple[float | None, float | None]:
        """Steps/s and tokens/s over the current segment (since the latest start or resume)."""
        last = self.state.last_step
        if not self.seg_first or not last or not _num(last.get("t")):
            return None, None
        t0, s0, k0 = self.seg_first
        dt = last["t"] - t0
        if dt <= 0:
            return None, None
        steps = (_int(last.get("step")) - s0) / dt
        tokens = (_int(last.get("tokens_seen")) - k0) / dt
        return (steps if steps > 0 else None), (tokens if tokens > 0 else None)

    def problems(self, has_toml: bool) -> list[str]:
        out = []
        if not has_toml:
            out.append("run.toml is missing: the run's configuration is gone, so it cannot be resumed")
        if self.corrupt:
            out.append(f"events.jsonl: {self.corrupt} line(s) are not valid events and were skipped")
        if self.torn and not self.state.alive:
            out.append("events.jsonl ends in a torn line (the engine stopped mid-write)")
        versions = sorted(str(v) for v in self.schemas)
        if versions:
            out.append(f"events use schema version {', '.join(versions)}; this tunetop reads version "
                       f"{SCHEMA_VERSION}: some figures may be missing")
        if self.unknown_types:
            out.append(f"unknown event types ignored: {', '.join(sorted(self.unknown_types))}")
        if self.loss.nonfinite:
            out.append(f"{self.loss.nonfinite} step(s) logged a NaN or infinite loss")
        return out


class RunTracker:
    def __init__(self, run_dir: Path):
        self.path = run_dir
        self.run_id = run_dir.name
        self.events_path = run_dir / rundir.EVENTS
        self.lock = threading.RLock()
        self.data = RunData(run_dir)
        self.log = LogTail(run_dir / rundir.LOG)
        self.version = 0                 # bumped on every change the UI may show
        self.loading = False
        self.has_toml = (run_dir / rundir.RUN_TOML).exists()
        self._offset = 0
        self._ino: int | None = None
        self._alive_at = 0.0
        if not self.has_toml:
            self.data.state.profile = "?"

    @property
    def loaded(self) -> bool:
        return self.data.loaded

    # -- loading -------------------------------------------------------------------------------------------

    def load(self, cancelled: Callable[[], bool] = lambda: False, publish: Callable[[], None] = lambda: None) -> None:
        """Read the whole event stream (fast scan); for a big file, publish a sampled preview first."""
        self.loading = True
        try:
            self._load(cancelled, publish)
        finally:
            self.loading = False

    def _load(self, cancelled, publish) -> None:
        try:
            st = os.stat(self.events_path)
        except OSError:
            st = None
        if st is not None and st.st_size > PREVIEW_BYTES:
            try:
                preview = self._preview(st.st_size)
            except OSError:
                preview = None
            if preview is not None:
                with self.lock:
                    self.data = preview
                    self.version += 1
                publish()
        data = RunData(self.path)
        offset = 0
        if st is not None:
            try:
                result = scan(self.events_path, data.loss.extend, cancelled=cancelled)
            except OSError as exc:
                data.notes.append(("error", f"cannot read events.jsonl: {exc.strerror or exc}"))
                result = None
            if cancelled():
                return
            if result is not None:
                offset = result.offset
                data.corrupt = result.corrupt
                data.torn = bool(result.torn_tail.strip())
                for _, e in sorted(result.events + result.tail_steps, key=lambda pe: pe[0]):
                    data.apply(e, chart=e.get("type") != "step")
                starts = [pos for pos, e in result.events if e.get("type") == "start"]
                first = first_step_after(self.events_path, starts[-1]) if starts else None
                if first and _num(first.get("t")) and isinstance(first.get("step"), int):
                    data.seg_first = (first["t"], first["step"], _int(first.get("tokens_seen")))
        if not self.has_toml:
            data.state.profile = data.state.profile or "?"
        elif not data.state.profile:
            data.state.profile = rundir.profile_name(self.path)
        rundir.refresh_alive(data.state)
        self.log.poll()
        data.loaded = True
        with self.lock:
            self.data = data
            self._offset = offset
            self._ino = st.st_ino if st else None
            self.version += 1

    def _preview(self, size: int) -> RunData:
        """State from the file's head and tail, and a curve sampled across it: right in milliseconds."""
        data = RunData(self.path)
        steps, losses = sample(self.events_path, size)
        data.loss.extend(steps, losses)
        with open(self.events_path, "rb") as f:
            head = f.read(64 << 10)
            f.seek(max(0, size - (256 << 10)))
            tail = f.read()
        for line in head.split(b"\n")[:-1] + tail.split(b"\n")[1:]:
            e = parse_line(line)
            if e is not None:
                data.apply(e, chart=False)
        data.state.profile = data.state.profile or (rundir.profile_name(self.path) if self.has_toml else "?")
        rundir.refresh_alive(data.state)
        data.preview = True
        return data

    # -- following -----------------------------------------------------------------------------------------

    def poll(self, now: float) -> bool:
        """Apply what was appended since the last look. True if anything visible changed."""
        if not self.data.loaded or self.loading:
            return False
        changed = False
        try:
            st = os.stat(self.events_path)
        except OSError:
            st = None
        if st is not None:
            if (self._ino is not None and st.st_ino != self._ino) or st.st_size < self._offset \
                    or st.st_size - self._offset > POLL_MAX:
                self.load()          # replaced, truncated, or a huge backlog: read it all again, fast
                return True
            if self._ino is None:
                self._ino = st.st_ino
            if st.st_size > self._offset:
                changed = self._read_new(st.st_size) or changed
        with self.lock:
            if self.log.poll():
                changed = True
        if now - self._alive_at >= ALIVE_EVERY_S:
            self._alive_at = now
            with self.lock:
                before = (self.data.state.alive, self.data.state.alive_since)
                rundir.refresh_alive(self.data.state)
                if (self.data.state.alive, self.data.state.alive_since) != before:
                    changed = True
        if changed:
            self.version += 1
        return changed

    def _read_new(self, size: int) -> bool:
        try:
            with open(self.events_path, "rb") as f:
                f.seek(self._offset)
                data = f.read(size - self._offset)
        except OSError:
            return False
        end = data.rfind(b"\n") + 1
        if not end:
            return False       # a line still being written
        bad = 0
        events = []
        for line in data[:end].split(b"\n")[:-1]:
            e = parse_line(line)
            if e is not None:
                events.append(e)
            elif line.strip():
                bad += 1
        with self.lock:
            for e in events:
                self.data.apply(e)
            self.data.corrupt += bad
            self.data.torn = bool(data[end:].strip())
            self._offset += end
        return True

    def engine_pid(self) -> int | None:
        info = rundir.read_pid(self.path) if self.data.state.alive else None
        return info["pid"] if info else None


def _backoff_text(e: dict) -> str:
    if e.get("message"):
        return str(e["message"])
    before, after = e.get("before") or {}, e.get("after") or {}
    parts = [f"{k} {before.get(k)}→{after.get(k)}" for k in ("micro_batch", "grad_accum", "gradient_checkpointing")
             if before.get(k) != after.get(k)]
    return (str(e.get("reason") or "") + ": " + ", ".join(parts)).strip(": ")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0
