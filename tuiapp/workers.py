"""The dashboard's background loops, each run in a thread worker.

Each loop wakes on a timer or an Event, checks `is_cancelled` (a thread worker that never does keeps the
process alive after the app exits) and posts a message only when what it read changed, so the UI redraws
only what changed.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from textual.worker import get_current_worker

from engine.telemetry import GpuInfo, GpuSource, engine_owner, sample_host

from .messages import GpuSample, HostSample, RunsChanged
from .registry import RunRegistry

Post = Callable[[object], object]


def _running(stop: threading.Event) -> bool:
    return not stop.is_set() and not get_current_worker().is_cancelled


def gpu_loop(source: GpuSource, registry: RunRegistry, post: Post, stop: threading.Event,
             device_s: float = 1.0, process_s: float = 2.0) -> None:
    """Devices about once a second, processes every two (NVML's process queries are the slow ones)."""
    devices: list[GpuInfo] = []
    procs: dict = {}
    next_dev = next_proc = 0.0
    last = None
    try:
        while _running(stop):
            now = time.monotonic()
            warning = None
            try:
                if now >= next_dev:
                    devices = source.sample_devices()
                    next_dev = now + device_s
                if now >= next_proc:
                    engines = registry.engine_pids()
                    procs = {i: [replace(p, run_id=engine_owner(p.pid, engines)) for p in ps]
                             for i, ps in source.sample_processes().items()}
                    next_proc = now + process_s
            except Exception as exc:   # a source must not raise; if one does, say so and keep going
                warning = f"GPU telemetry failed: {str(exc).strip() or type(exc).__name__}"
                devices = [GpuInfo(g.index, g.nvml_index, g.name, error="no reading (telemetry failed)")
                           for g in devices]
                procs = {}
                next_dev = next_proc = now + device_s
            sample = (devices, procs, source.error, warning)
            if sample != last:
                last = sample
                post(GpuSample(*sample))
            stop.wait(max(0.05, min(next_dev, next_proc) - time.monotonic()))
    finally:
        try:
            source.close()
        except Exception:
            pass


def host_loop(root: Path, post: Post, stop: threading.Event, every_s: float = 2.0,
              sample: Callable[[Path], object] = sample_host) -> None:
    last = None
    while _running(stop):
        info = sample(root)
        if info != last:
            last = info
            post(HostSample(info))
        stop.wait(every_s)


def runs_loop(registry: RunRegistry, post: Post, stop: threading.Event, wake: threading.Event,
              poll_s: float = 0.5, rescan_s: float = 2.0) -> None:
    """Follow every loaded run: new events and log lines (chunks from an offset), liveness, new folders."""
    next_rescan = 0.0
    while _running(stop):
        now = time.monotonic()
        structure = False
        if now >= next_rescan or wake.is_set():
            structure = registry.rescan()
            next_rescan = now + rescan_s
        wake.clear()
        changed = set()
        for t in registry.snapshot():
            if stop.is_set():
                return
            try:
                if t.poll(now):
                    changed.add(t.run_id)
            except Exception as exc:   # one broken run folder must not stop the others being followed
                t.note("error", f"cannot follow this run: {exc}")
                changed.add(t.run_id)
        if changed or structure:
            post(RunsChanged(registry.views(), changed, structure, error=registry.error))
        wake.wait(poll_s)


LOAD_POST_S = 0.1    # while histories load, the table hears about them at most this often


def load_loop(registry: RunRegistry, post: Post, stop: threading.Event, focused: Callable[[], str | None]) -> None:
    """Read each run's history once (the focused run first, then newest first); runs_loop follows them
    afterwards. Loaded runs are announced together, at most every LOAD_POST_S: one message per run made the
    first frame with 200 runs wait behind 200 table redraws."""
    if registry.rescan():      # don't wait for runs_loop's first look: reattaching should be quick
        post(RunsChanged(registry.views(), set(), True, error=registry.error))
    done: set[str] = set()
    posted_at = time.monotonic()
    while _running(stop):
        pending = [t for t in registry.ordered() if not t.loaded and not t.loading]
        if done and (not pending or time.monotonic() - posted_at >= LOAD_POST_S):
            post(RunsChanged(registry.views(), done, True, error=registry.error))
            done, posted_at = set(), time.monotonic()
        if not pending:
            stop.wait(0.2)
            continue
        want = focused()
        t = next((t for t in pending if t.run_id == want), pending[0])

        def publish(t=t):
            # The preview is on its way to the screen: let the UI paint it before the exact scan starts,
            # since the scan's regex calls hold the GIL and would make that paint wait.
            painted = threading.Event()
            post(RunsChanged(registry.views(), {t.run_id}, True, painted, error=registry.error))
            painted.wait(1.0)
        try:
            t.load(cancelled=stop.is_set, publish=publish)
        except Exception as exc:
            t.note("error", f"cannot read this run: {exc}")
            t.mark_loaded()
        done.add(t.run_id)
        if t.run_id == want:   # the run in focus is drawn as soon as it is read
            post(RunsChanged(registry.views(), done, True, error=registry.error))
            done, posted_at = set(), time.monotonic()
