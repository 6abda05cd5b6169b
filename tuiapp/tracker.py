"""One run as the dashboard sees it: the folded state, the curves, notable events and the recent events.

A worker thread loads and polls trackers. Its RunData is private to it (folded in place, never read by the
UI). After every change it publishes an immutable RunView: a copy of what the screen shows, swapped into
`tracker.view` in one assignment and carried by the RunsChanged message (nvitop swaps a finished snapshot the
same way; harlequin's messages carry their data). Widgets draw views, so nothing on the UI thread takes a lock,
and a view's `version` says whether anything changed since the last draw.
"""
from __future__ import annotations

import copy
import os
from array import array
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from engine import event_index, rundir
from engine.events import EVENT_TYPES, SCHEMA_VERSION, parse_line
from engine.growing_file import GrowingFile
from engine.rundir import RunState

from . import curve_cache, fmt, series
from .scan import first_step_after, sample, scan, step_points
from .series import Series

# Above this, a sampled preview of the curves is drawn before the exact scan. The preview costs its own
# work (~0.1 s) and a paint round trip before the scan starts (0.1-0.3 s on the 2-core machine), so below
# ~180k step events (64 MB) the exact chart comes sooner without it (bench_reattach.py).
PREVIEW_BYTES = 64 << 20
POLL_MAX = 4 << 20          # a backlog bigger than this is read with the fast scan (a full reload)
ALIVE_EVERY_S = 2.0        # a pid check each 2 s: how soon a killed engine shows as interrupted
RECENT_LINES = 40          # readable event lines kept for the panel's tail
# The curves kept from step events, each a Series by step: what the chart draws ("tokens" is tokens_seen,
# the tokens x-axis reads it through Series.at). Evals are their own Series (eval events).
CURVES = ("loss", "lr", "grad_norm", "tokens")


class RunData:
    """Everything shown about a run, folded from its events."""

    def __init__(self, run_dir: Path):
        self.state = RunState(run_id=run_dir.name, path=run_dir)
        self.curves = {name: Series() for name in CURVES}
        self.loss = self.curves["loss"]
        self.evals = Series()
        self.notes: deque[tuple[str, str]] = deque(maxlen=50)   # (level, message): backoffs, warnings, errors
        self.recent: deque[str] = deque(maxlen=RECENT_LINES)       # events as readable lines (fmt.event_line)
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
        line = fmt.event_line(e)
        if line:
            self.recent.append(line)
        kind, v = e.get("type"), e.get("v")
        if v != SCHEMA_VERSION:
            self.schemas.add(v)
        if kind == "step":
            step = e.get("step")
            if chart:
                for name, value in step_points(e):
                    self.curves[name].add(step, value)
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
            self.notes.append(("warning", fmt.backoff_text(e)))
        elif kind == "log":
            if e.get("level") in ("warning", "error"):
                self.notes.append((e["level"], str(e.get("message", ""))))
        elif kind == "end":
            if e.get("status") == "failed":
                hint = f" (hint: {e['hint']})" if e.get("hint") else ""
                self.notes.append(("error", f"failed: {e.get('error')}{hint}"))
        elif kind not in EVENT_TYPES:
            self.unknown_types.add(str(kind))

    def snapshot(self, version: int, has_toml: bool) -> "RunView":
        """An immutable copy of what the screen shows (the worker goes on folding into self)."""
        st = self.state
        state = replace(st, warnings=list(st.warnings), recent=copy.copy(st.recent))
        return RunView(
            run_id=st.run_id, path=st.path, version=version, has_toml=has_toml, state=state,
            loss=self.loss.copy(), evals=self.evals.copy(), lr=self.curves["lr"].copy(),
            grad_norm=self.curves["grad_norm"].copy(), tokens=self.curves["tokens"].copy(),
            notes=tuple(self.notes), recent=tuple(self.recent),
            device=self.device, precision=self.precision, effective_batch=self.effective_batch,
            cuda_peak=self.cuda_peak, rss=self.rss, corrupt=self.corrupt, torn=self.torn, preview=self.preview,
            loaded=self.loaded, problems=tuple(self.problems(has_toml)), avg_rates=self.avg_rates())

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


@dataclass(frozen=True, eq=False)
class RunView:
    """What the screen shows of a run at one moment. Never changed after it is made: the UI thread reads it
    without a lock. `state` is a private copy (its clocks, ETA and status still follow the wall clock)."""
    run_id: str
    path: Path
    version: int                      # grows with every change the tracker publishes
    has_toml: bool
    state: RunState
    loss: Series
    evals: Series
    lr: Series
    grad_norm: Series
    tokens: Series                    # tokens_seen by step (the chart's tokens x-axis)
    notes: tuple[tuple[str, str], ...]
    recent: tuple[str, ...]           # the latest events as readable lines
    device: str | None
    precision: str | None
    effective_batch: int | None
    cuda_peak: int | None
    rss: int | None
    corrupt: int
    torn: bool
    preview: bool
    loaded: bool
    problems: tuple[str, ...]
    avg_rates: tuple[float | None, float | None]

    def curves(self) -> dict[str, Series]:
        """The chart's curves by name: the step events' (CURVES) and "eval"."""
        return {"loss": self.loss, "lr": self.lr, "grad_norm": self.grad_norm, "tokens": self.tokens,
                "eval": self.evals}


class RunTracker:
    def __init__(self, run_dir: Path):
        self.path = run_dir
        self.run_id = run_dir.name
        self.events_path = run_dir / rundir.EVENTS
        self.has_toml = (run_dir / rundir.RUN_TOML).exists()
        self._data = RunData(run_dir)          # the worker's; the UI reads `view`
        self._events = GrowingFile(self.events_path)
        self._alive_at = 0.0
        self._status = ""
        self.loading = False
        self.version = 0
        if not self.has_toml:
            self._data.state.profile = "?"
        self.view: RunView = self._data.snapshot(0, self.has_toml)

    @property
    def loaded(self) -> bool:
        return self._data.loaded

    def _publish(self) -> RunView:
        """Swap in a fresh snapshot (one reference assignment: a reader sees the old view or the new one)."""
        self.version += 1
        self.view = self._data.snapshot(self.version, self.has_toml)
        return self.view

    def note(self, level: str, message: str) -> None:
        """A problem met while reading this run (the worker's call); shown with the run's notes."""
        self._data.notes.append((level, message))
        self._publish()

    def mark_loaded(self) -> None:
        self._data.loaded = True
        self._publish()

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
        # What an earlier reattach read (curve_cache): only the bytes after it are scanned, and when those
        # are few the exact chart comes as fast as a preview would.
        cached = curve_cache.load(self.events_path) if st is not None and st.st_size >= curve_cache.MIN_BYTES \
            else None
        # A long history the engine indexed (events.idx) reads exactly in about the time a preview takes.
        if st is not None and st.st_size - (cached.offset if cached else 0) > PREVIEW_BYTES \
                and not event_index.index_path(self.events_path).exists():
            try:
                preview = self._preview(st.st_size)
            except OSError:
                preview = None
            if preview is not None:
                self._data = preview
                self._publish()
                publish()
        data = RunData(self.path)
        offset = 0
        if st is not None:
            if cached is not None:
                data.curves.update(cached.curves)
                data.loss, data.evals = data.curves["loss"], cached.evals
            sink = _Batches(data.curves)
            # A long history: numpy bins it (a step line is ~250-400 bytes).
            series.load_numpy((st.st_size - (cached.offset if cached else 0)) // 400)
            try:
                result = scan(self.events_path, sink.add, start=cached.offset if cached else 0, cancelled=cancelled,
                              tail_start=0)
                sink.flush()
            except OSError as exc:
                data.notes.append(("error", f"cannot read events.jsonl: {exc.strerror or exc}"))
                result = None
            if cancelled():
                return
            if result is not None:
                if cached is not None:
                    result.events[:0] = cached.events
                    result.corrupt += cached.corrupt
                    result.step_events += cached.step_events
                offset = result.offset
                data.corrupt = result.corrupt
                data.torn = bool(result.torn_tail.strip())
                # Evals were binned already when they came from the cache; step events feed the curves
                # through the scan, never twice.
                for pos, e in sorted(result.events + result.tail_steps, key=lambda pe: pe[0]):
                    data.apply(e, chart=e.get("type") != "step" and not (cached and pos < cached.offset))
                starts = [pos for pos, e in result.events if e.get("type") == "start"]
                first = first_step_after(self.events_path, starts[-1]) if starts else None
                if first and _num(first.get("t")) and isinstance(first.get("step"), int):
                    data.seg_first = (first["t"], first["step"], _int(first.get("tokens_seen")))
                if not cached or offset > cached.offset:
                    curve_cache.save(self.events_path, offset, data.curves, data.evals, result.events,
                                     result.corrupt, result.step_events)
        if not self.has_toml:
            data.state.profile = data.state.profile or "?"
        elif not data.state.profile:
            data.state.profile = rundir.profile_name(self.path)
        rundir.refresh_alive(data.state)
        data.loaded = True
        self._events = GrowingFile(self.events_path)
        self._events.offset = offset             # follow on from where the scan stopped
        self._data = data
        self._status = data.state.status
        self._publish()

    def _preview(self, size: int) -> RunData:
        """State from the file's head and tail, and a curve sampled across it: right in milliseconds."""
        data = RunData(self.path)
        for e in sample(self.events_path, size):
            for name, value in step_points(e):
                data.curves[name].add(e["step"], value)
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
        """Apply what was appended since the last look; publish a new view if anything visible changed."""
        if not self._data.loaded or self.loading:
            return False
        changed = False
        if self.events_path.exists():
            pending = self._events.pending()      # None: replaced or truncated since the last look
            if pending is None or pending > POLL_MAX:
                self.load()          # replaced, truncated, or a huge backlog: read it all again, fast
                return True
            if pending:
                changed = self._read_new()
        if now - self._alive_at >= ALIVE_EVERY_S:
            self._alive_at = now
            state = self._data.state
            before = (state.alive, state.alive_since, state.heartbeat_t)
            rundir.refresh_alive(state)
            # The status moves with the clock too: hung and stalled come from the heartbeat's and the last
            # step's age, with no new event. A fresh heartbeat is news as well: the published view judges
            # "hung" from the heartbeat time it holds.
            status = state.status
            if (state.alive, state.alive_since, state.heartbeat_t) != before or status != self._status:
                self._status = status
                changed = True
        if changed:
            self._publish()
        return changed

    def _read_new(self) -> bool:
        chunk = self._events.read(POLL_MAX)
        if chunk is None:
            return False
        data = self._data
        bad = 0
        for line in chunk.lines:
            e = parse_line(line)
            if e is not None:
                data.apply(e)
            elif line.strip():
                bad += 1
        data.corrupt += bad
        torn = bool(chunk.partial.strip())
        changed = bool(chunk.lines) or torn != data.torn
        data.torn = torn
        return changed

    def engine_pid(self) -> int | None:
        info = rundir.read_pid(self.path) if self.view.state.alive else None
        return info["pid"] if info else None


class _Batches:
    """The scan's points, handed to Series.extend about 64k at a time instead of one chunk (~1,400 lines) at a
    time: each extend has a fixed cost (numpy's set-up), which was a fifth of a million-event scan."""
    SIZE = 1 << 16

    def __init__(self, curves: dict[str, Series]):
        self.curves = curves
        self.pending = {name: (array("q"), array("d")) for name in curves}

    def add(self, name: str, steps, values) -> None:
        if len(steps) >= self.SIZE:          # already a big batch (the engine's index: numpy columns)
            self.flush(name)
            self.curves[name].extend(steps, values)
            return
        ps, pv = self.pending[name]
        ps.extend(steps)
        pv.extend(values)
        if len(ps) >= self.SIZE:
            self.flush(name)

    def flush(self, name: str | None = None) -> None:
        for n in [name] if name else list(self.pending):
            ps, pv = self.pending[n]
            if ps:
                self.curves[n].extend(ps, pv)
                self.pending[n] = (array("q"), array("d"))


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0
