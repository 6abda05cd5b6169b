"""The stall watchdog: a daemon thread in the engine that notices when steps stop coming.

A stall is recorded in the run directory as a `log` warning with code "stalled", which the notifier and
the dashboard both turn into a message. The threshold is the readers' own (see the team contract and
RunState): no step, eval or checkpoint event for longer than max(TUNETOP_STALL_MIN_S, default 120 s,
10 x the median step time), counted from the first step of each segment (loading and the first step may
take minutes); until three step times are known it waits five times the floor. It fires once per stall and
re-arms when steps come back.

What it cannot see, said plainly: a process that is gone (kill -9, the OOM killer, a power cut) sends
nothing; the dashboard and `tunetop ls` show such a run as "interrupted". An engine whose main thread
is stuck in native code that keeps the GIL (rare: NCCL and CUDA waits release it) stops this thread too.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from collections import deque

ACTIVITY = ("start", "step", "eval", "checkpoint")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def stall_min_s() -> float:
    return _env_float("TUNETOP_STALL_MIN_S", 120.0)


class StallWatchdog:
    def __init__(self, writer, check_every_s: float = 1.0):
        self.writer = writer
        self.check_every_s = check_every_s
        self.min_s = stall_min_s()
        # TUNETOP_STALL_FACTOR (default 10): how many median step times without progress count as a stall.
        self.factor = _env_float("TUNETOP_STALL_FACTOR", 10.0)
        self._last = time.monotonic()
        self._last_step_t: float | None = None
        self._step: int | None = None
        self._times: deque = deque(maxlen=50)
        self._fired = False
        self._ended = False
        # Armed from the first step of each segment: loading a large model, the probe and the first step
        # (kernel compilation, warm-up) may take minutes without being stuck.
        self._armed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunetop-stall-watchdog", daemon=True)
        self._thread.start()

    def on_event(self, e: dict) -> None:
        kind = e.get("type")
        if kind == "end":
            self._ended = True
            return
        if kind not in ACTIVITY:
            return
        now = time.monotonic()
        if kind == "start":
            self._armed, self._last_step_t = False, None
        if kind == "step":
            self._armed = True
            if self._last_step_t is not None:
                self._times.append(now - self._last_step_t)
            self._last_step_t = now
            self._step = e.get("step") if isinstance(e.get("step"), int) else self._step
            self._fired = False
        self._last = now

    def threshold(self) -> float:
        if len(self._times) < 3:
            # No step time to compare with yet (warm-up, a first backoff): five times the floor.
            return max(5 * self.min_s, self.factor * max(self._times, default=0.0))
        return max(self.min_s, self.factor * statistics.median(self._times))

    def close(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every_s):
            quiet = time.monotonic() - self._last
            limit = self.threshold()
            if not self._armed or self._ended or self._fired or quiet <= limit:
                continue
            self._fired = True
            where = f"after step {self._step}"
            try:
                self.writer.write("log", level="warning", code="stalled", step=self._step,
                                  message=f"no training progress for {quiet:.0f} s {where} (threshold "
                                          f"{limit:.0f} s); the engine is alive but stuck: check engine.log, "
                                          "the data loader, or a GPU peer that stopped answering")
            except (OSError, ValueError):
                return
