"""A run's state folded from its events, and what its statuses mean.

Statuses (RunState.status):
    starting     an engine holds the lock but has not written this segment's start event yet
    running      alive, heartbeat fresh, steps arriving
    hung         alive (lock held) but the heartbeat is older than TUNETOP_HUNG_AFTER_S (default 30 s):
                 the process is frozen (SIGSTOP, a stuck driver call)
    stalled      alive, heartbeat fresh, but no step for longer than max(TUNETOP_STALL_MIN_S (default
                 120 s), 10 x the run's median step time); judged only once a step has arrived
    completed / stopped / failed    from the latest segment's end event
    interrupted  no live engine and no end event (kill -9, power loss): resumable
    failed to start                 no live engine, no start event, nothing saved

Thresholds are read from the environment each time a status is asked for, so a test or a user can
change them without a restart: TUNETOP_HUNG_AFTER_S, TUNETOP_STALL_MIN_S (seconds, > 0) and
TUNETOP_STALL_FACTOR (median step times, default 10; engine/notify/watchdog.py reads the same variables).

The liveness inputs (`alive`, `alive_since`, `heartbeat_t`, `output`, `checkpointed`) are set by
engine/rundir.py, which reads the run directory; this module only folds events and judges.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from . import events as ev

ACTIVE = ("starting", "running", "hung", "stalled")
RATE_WINDOW = 30  # step events used for the current speed

HUNG_AFTER_S = 30.0
STALL_MIN_S = 120.0
STALL_STEP_FACTOR = 10.0


def hung_after_s() -> float:
    """Seconds without a heartbeat before a live engine counts as hung (env TUNETOP_HUNG_AFTER_S)."""
    return _env_seconds("TUNETOP_HUNG_AFTER_S", HUNG_AFTER_S)


def stall_min_s() -> float:
    """Floor of the no-step time before a live engine counts as stalled (env TUNETOP_STALL_MIN_S)."""
    return _env_seconds("TUNETOP_STALL_MIN_S", STALL_MIN_S)


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
        return value if value > 0 else default
    except ValueError:
        return default


@dataclass
class RunState:
    """What the events say about a run, folded incrementally (the dashboard feeds it live).

    Elapsed time (`elapsed`) is the training wall time over all segments: for each segment (a start
    event and the events after it up to the next start), the time from its start event to its last
    event, summed; the open segment of a live engine counts up to now. Gaps while a run was stopped or
    dead are not counted. ls, watch, run and the dashboard all show this one figure.
    """
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
    start_event: dict | None = None   # the latest start event itself
    closed_s: float = 0.0             # training time of the segments before the latest one
    last_t: float | None = None
    ended: dict | None = None         # the end event of the latest segment
    last_step: dict | None = None
    last_step_t: float | None = None  # time of the latest step event of the current segment
    backoffs: int = 0
    # Several processes (the latest start event; engine/train/distributed_setup.py writes them). One process:
    # world_size 1 and strategy "single" (or "" in events written before issue 13).
    world_size: int = 1
    nodes: int = 1
    strategy: str = ""
    strategy_reason: str = ""
    # Every rank's memory from the step events' memory_ranks: ((rank, CUDA peak, RSS), ...) sorted by rank,
    # the CUDA peak the highest seen this segment, RSS the latest. A new tuple each time (never mutated), so
    # the dashboard's shallow copy of this state stays unchanged while the worker folds on.
    rank_memory: tuple = ()
    last_oom_rank: int | None = None   # the rank that ran out of memory in the latest backoff (several ranks)
    warnings: list[str] = field(default_factory=list)
    alive: bool = False
    alive_since: float | None = None   # the live engine's process start time (verified pid)
    heartbeat_t: float | None = None   # mtime of runs/<id>/heartbeat
    output: bool = False               # adapter/ or model/ exists
    checkpointed: bool = False         # a checkpoint folder exists
    events_missing: bool = False       # no events.jsonl at all
    partial: bool = False              # a large file read at head and tail only (counts cover the tail)
    read_offset: int = 0               # where a live reader continues in events.jsonl
    segment_offset: int | None = None  # where the newest launch's events begin (segments.json)
    end_offset: int | None = None      # where the latest end event is in events.jsonl
    # (t, step, tokens_seen) of recent step events: speeds and ETA come from event timestamps, so they are
    # right after a reattach too (a progress bar's own clock would start at zero).
    recent: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))

    def apply(self, e: dict) -> None:
        t, kind = e.get("t"), e.get("type")
        t = t if isinstance(t, (int, float)) and not isinstance(t, bool) else None
        if kind == "start":
            if self.segment_start is not None and self.last_t is not None:
                self.closed_s += max(0.0, self.last_t - self.segment_start)
            self.started = self.started or t
            self.segment_start = t
            self.start_event = e
            self.ended = None
            self.last_step_t = None
            self.recent.clear()  # a resume starts a new timing segment
            for key in ("profile", "model", "method", "total_steps", "micro_batch", "grad_accum"):
                if e.get(key) is not None:
                    setattr(self, key, e[key])
            self.world_size = max(1, _int(e.get("world_size"), 1))
            self.nodes = max(1, _int(e.get("nodes"), 1))
            self.strategy = e["strategy"] if isinstance(e.get("strategy"), str) else ""
            self.strategy_reason = e["strategy_reason"] if isinstance(e.get("strategy_reason"), str) else ""
            self.rank_memory = ()    # this segment's ranks (a resume may have another world size)
        elif kind == "step":
            self.last_step = e
            self.last_step_t = t
            self.step = _int(e.get("step"), self.step)
            if t is not None:
                self.recent.append((t, self.step, _int(e.get("tokens_seen"), 0)))
            self.total_steps = _int(e.get("total_steps"), self.total_steps)
            self.loss = _float(e.get("loss"), self.loss)
            self.lr = _float(e.get("lr"), self.lr)
            self.epoch = _float(e.get("epoch"), self.epoch)
            if isinstance(e.get("memory_ranks"), list):
                self.rank_memory = _fold_ranks(self.rank_memory, e["memory_ranks"])
        elif kind == "eval":
            self.eval_loss = _float(e.get("eval_loss"), self.eval_loss)
        elif kind == "backoff":
            self.backoffs += 1
            after = e.get("after") if isinstance(e.get("after"), dict) else {}
            self.micro_batch = after.get("micro_batch", self.micro_batch)
            self.grad_accum = after.get("grad_accum", self.grad_accum)
            self.last_oom_rank = _int(e.get("oom_rank"), None)
        elif kind == "log" and e.get("level") in ("warning", "error"):
            self.warnings.append(str(e.get("message", "")))
        elif kind == "end":
            self.ended = e
            self.step = _int(e.get("step"), self.step)
        if t is not None:
            self.last_t = t

    @property
    def distributed(self) -> bool:
        """Several processes, or one process over several GPUs (model_parallel)."""
        return self.world_size > 1 or self.strategy == "model_parallel"

    @property
    def fullest_rank(self) -> tuple[int, int, str] | None:
        """(rank, bytes, "cuda" or "rss") of the rank holding the most memory: the CUDA peak where the ranks
        report one, else the resident set (CPU processes)."""
        cuda = [(peak, rank) for rank, peak, _ in self.rank_memory if peak is not None]
        if cuda:
            peak, rank = max(cuda)
            return rank, peak, "cuda"
        rss = [(size, rank) for rank, _, size in self.rank_memory if size is not None]
        if rss:
            size, rank = max(rss)
            return rank, size, "rss"
        return None

    @property
    def status(self) -> str:
        if self.alive and not self._ended_by_live_process:
            if self.events_missing:   # deleted under a live engine: it runs, but says nothing readable
                return "hung" if self._heartbeat_stale else "running"
            if not self.segment_start or self.ended:
                return "hung" if self._heartbeat_stale else "starting"
            if self._heartbeat_stale:
                return "hung"
            return "stalled" if self._stalled else "running"
        if self.ended:
            status = self.ended.get("status")
            return status if status in ev.END_STATUSES else "failed"
        if self.output:
            return "completed"   # the result is there even if the events are gone or cut short
        # No end event and no live process: the engine died (kill -9, power loss, OOM killer).
        return "interrupted" if self.started or self.checkpointed else "failed to start"

    @property
    def _ended_by_live_process(self) -> bool:
        """The end event belongs to the engine that still holds the lock (it is exiting): the run is over.

        Otherwise the lock holder is a resume that has not written its start event yet. Decided by file
        offsets when the launcher recorded where the newest launch's events begin; else by the live
        process's start time (an end event older than it belongs to an earlier segment).
        """
        if not self.ended:
            return False
        if self.end_offset is not None and self.segment_offset is not None:
            return self.end_offset >= self.segment_offset
        return self.alive_since is None or self.ended.get("t", 0) >= self.alive_since

    @property
    def heartbeat_age(self) -> float | None:
        """Seconds since the engine's last sign of life (heartbeat, or the process start if younger)."""
        if self.heartbeat_t is None:
            return None   # an engine that writes no heartbeat is never called hung
        newest = max(self.heartbeat_t, self.alive_since or 0.0)
        return max(0.0, time.time() - newest)

    @property
    def _heartbeat_stale(self) -> bool:
        age = self.heartbeat_age
        return age is not None and age > hung_after_s()

    @property
    def typical_step_s(self) -> float | None:
        """Median seconds per step over the recent step events of this segment."""
        pts = list(self.recent)
        per = [(t1 - t0) / (s1 - s0) for (t0, s0, _), (t1, s1, _) in zip(pts, pts[1:]) if s1 > s0 and t1 >= t0]
        if not per:
            return None
        per.sort()   # the median, without `statistics` (it pulls in fractions/decimal: CLI start-up time)
        mid = len(per) // 2
        return per[mid] if len(per) % 2 else (per[mid - 1] + per[mid]) / 2

    @property
    def stall_after_s(self) -> float:
        """No-step seconds before a live run counts as stalled: max(TUNETOP_STALL_MIN_S, 10 x median step)."""
        typical = self.typical_step_s
        factor = _env_seconds("TUNETOP_STALL_FACTOR", STALL_STEP_FACTOR)   # the notify watchdog's knob too
        return max(stall_min_s(), factor * typical if typical else 0.0)

    @property
    def since_last_step_s(self) -> float | None:
        return max(0.0, time.time() - self.last_step_t) if self.last_step_t is not None else None

    @property
    def _stalled(self) -> bool:
        idle = self.since_last_step_s
        return idle is not None and idle > self.stall_after_s

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
        """Training wall time over all segments (see the class docstring)."""
        if self.segment_start is None:
            return self.closed_s or None
        open_segment = self.alive and not self.ended
        end = time.time() if open_segment else (self.last_t or self.segment_start)
        return self.closed_s + max(0.0, end - self.segment_start)

    @property
    def note(self) -> str:
        """A short remark beside the status, when there is one."""
        if self.events_missing and (self.alive or not self.output):
            return "events.jsonl missing"
        if self.status == "hung" and self.heartbeat_age is not None:
            return f"no heartbeat for {self.heartbeat_age:.0f}s"
        if self.status == "stalled" and self.since_last_step_s is not None:
            return f"no step for {self.since_last_step_s:.0f}s"
        return ""


def _fold_ranks(before: tuple, reported: list) -> tuple:
    """The per-rank figures after one step event's memory_ranks ([{rank, cuda_peak?, rss?}, ...])."""
    known = {rank: (peak, rss) for rank, peak, rss in before}
    for m in reported:
        if not isinstance(m, dict) or _int(m.get("rank"), None) is None:
            continue
        old_peak, old_rss = known.get(m["rank"], (None, None))
        peak = _int(m.get("cuda_peak"), None)
        if peak is not None and old_peak is not None:
            peak = max(peak, old_peak)
        known[m["rank"]] = (peak if peak is not None else old_peak, _int(m.get("rss"), old_rss))
    return tuple((rank, *known[rank]) for rank in sorted(known))


def _int(v, default):
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _float(v, default):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default
