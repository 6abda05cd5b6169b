"""Helpers for the dashboard tests: run folders made by hand, scripted GPU sources, pilot plumbing.

pytest-asyncio is not a dependency: each pilot test wraps its coroutine in asyncio.run (see `drive`).
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from engine import rundir
from engine.profile import dumps, load_named
from engine.telemetry import GpuInfo, ProcInfo, ScriptedSource

from .helpers import HEAVY, ROOT, await_until  # noqa: F401 (re-exported for the dashboard tests)

GIB = 1 << 30


def two_gpus(procs: dict | None = None) -> ScriptedSource:
    return ScriptedSource(
        devices=[GpuInfo(0, 0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", 62 * GIB, 80 * GIB, 97, 71, 312.5, 700.0),
                 GpuInfo(1, 1, "NVIDIA A100-SXM4-40GB", "GPU-bbbb", 3 * GIB, 40 * GIB, None, 40, None, 400.0)],
        processes=procs if procs is not None else {0: [ProcInfo(4242, 60 * GIB, "python")], 1: []})


def ev(type_: str, t: float, **fields) -> dict:
    return {"v": 1, "t": t, "type": type_, **fields}


def demo_events(steps: int = 20, total: int = 40, t0: float = 1_700_000_000.0, end: str | None = "completed",
                step_s: float = 1.0) -> list[dict]:
    out = [ev("start", t0, run_id="x", profile="demo", model="/work/assets/tiny-llama", method="lora",
              device="cpu", precision="fp32", micro_batch=8, grad_accum=2, effective_batch=16, total_steps=total)]
    for i in range(1, steps + 1):
        out.append(ev("step", t0 + i * step_s, step=i, total_steps=total, epoch=i / total, loss=6.0 - i * 0.01,
                      lr=1e-3, grad_norm=0.5, tokens_seen=i * 100, step_time=step_s, memory={"rss": 500 << 20}))
        if i % 10 == 0:
            out.append(ev("eval", t0 + i * step_s + 0.1, step=i, eval_loss=5.9 - i * 0.01))
    if end:
        out.append(ev("end", t0 + steps * step_s + 1, status=end, step=steps, total_steps=total,
                      final_loss=6.0 - steps * 0.01))
    return out


def make_run(root: Path, name: str, events: list[dict] | bytes | None = None, toml: bool = True,
             log: str = "engine says hello\n") -> Path:
    run = root / name
    run.mkdir(parents=True)
    if toml:
        (run / rundir.RUN_TOML).write_text(dumps(load_named("demo")))
    if events is not None:
        data = events if isinstance(events, bytes) else b"".join(
            json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)
        (run / rundir.EVENTS).write_bytes(data)
    (run / rundir.LOG).write_text(log)
    return run


def fake_engine(run: Path) -> subprocess.Popen:
    """A live process recorded as the run's engine, holding the run's lock as a launched engine does (the
    run then counts as running)."""
    from engine import runlock
    fd = runlock.acquire(run)
    try:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                                pass_fds=(fd,))
    finally:
        os.close(fd)
    (run / rundir.PID).write_text(json.dumps({"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}))
    return proc


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())




async def wait_text(pilot, *needles: str, timeout: float = 20.0) -> str:
    ok = await await_until(pilot, lambda: all(n in screen_text(pilot.app) for n in needles), timeout)
    text = screen_text(pilot.app)
    assert ok, f"{needles} not on screen after {timeout}s:\n{text}"
    return text


def drive(app, size, scenario):
    """Run `await scenario(pilot)` inside app.run_test at the given size."""
    async def main():
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)
    asyncio.run(main())
