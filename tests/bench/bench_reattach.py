"""Benchmark: reattach to a long run. Open a run whose events.jsonl holds 100,000 and 1,000,000 step events
and time the dashboard until the loss chart covers the whole run.

Two figures per size, from the app's first frame (in-process, headless 120x40, the run in focus; the
start-up itself is bench_startup.py's):
  first full chart: the curve over every step, from ~2,000 evenly spaced samples (drawn within ms);
  exact chart:      every step event binned (the fast scan), state and speeds from the events.
Beside them, measured in the same run: reading the file's bytes (the disk's floor), and parsing every line
with json.loads (the plain way), so the figures can be judged on this machine. Goals: 100k < 0.5 s,
1M < 3 s.

    python tests/bench/bench_reattach.py [--sizes 100000 1000000] [--no-plain]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
GOALS = {100_000: 0.5, 1_000_000: 3.0}


def write_run(root: Path, n: int) -> Path:
    from engine.profile import dumps, load_named
    run = root / f"20250101-000000-steps{n}"
    run.mkdir(parents=True)
    (run / "run.toml").write_text(dumps(load_named("demo")))
    t = 1.7e9
    with open(run / "events.jsonl", "w") as f:
        f.write(json.dumps({"v": 1, "t": t, "type": "start", "run_id": run.name, "profile": "demo",
                            "model": "tiny", "method": "lora", "micro_batch": 8, "grad_accum": 2,
                            "total_steps": n}, separators=(",", ":")) + "\n")
        for i in range(1, n + 1):
            t += 0.5
            f.write(json.dumps({"v": 1, "t": round(t, 3), "type": "step", "step": i, "total_steps": n,
                                "epoch": round(i / n * 3, 4), "loss": 6.2 - 4 * i / n + (i % 7) * 0.01,
                                "lr": 2e-4, "grad_norm": 0.31, "tokens_seen": i * 2048, "step_time": 0.5,
                                "samples_per_s": 32.0, "tokens_per_s": 4096.0, "eta_s": (n - i) * 0.5,
                                "memory": {"cuda_allocated": 9 << 30, "cuda_reserved": 11 << 30,
                                           "cuda_peak": 10 << 30, "rss": 3 << 30}},
                               separators=(",", ":")) + "\n")
            if i % 500 == 0:
                f.write(json.dumps({"v": 1, "t": round(t, 3), "type": "eval", "step": i,
                                    "eval_loss": 6.0 - 4 * i / n}, separators=(",", ":")) + "\n")
        f.write(json.dumps({"v": 1, "t": t + 1, "type": "end", "status": "completed", "step": n,
                            "total_steps": n}, separators=(",", ":")) + "\n")
    return run


async def open_run(root: Path, n: int) -> tuple[float, float, float]:
    """Seconds from app start to: its first frame, the first full chart, the exact chart."""
    from engine.telemetry import ScriptedSource
    from tuiapp.app import TunetopApp
    t0 = time.perf_counter()
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)
    frame = first = exact = None
    async with app.run_test(size=(120, 40)) as pilot:
        frame = time.perf_counter() - t0      # run_test returns once the app is mounted and painted
        # Poll slowly (a busy poll would compete with the scan for the GIL) and read when each state of the
        # curve was drawn from the chart's own record.
        while exact is None and time.perf_counter() - t0 < 300:
            await pilot.pause(0.25)
            for when, points, last_step in app.chart.drawn:
                if points and last_step >= n * 0.99:
                    first = first or when - t0
                    if points == n:
                        exact = when - t0
        step = app.registry.get(app.focus_run).view.state.step
    assert step == n, step
    return frame, first, exact


def plain(path: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    path.read_bytes()
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
    return read, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--no-plain", action="store_true", help="skip the json.loads-per-line reference")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            root = Path(tmp) / f"runs{n}"
            run = write_run(root, n)
            size = (run / "events.jsonl").stat().st_size
            frame, first, exact = asyncio.run(open_run(root, n))
            read, parsed = plain(run / "events.jsonl") if not args.no_plain else (None, None)
            goal = GOALS.get(n)
            print(f"reattach to {n:,} step events ({size / 1e6:.0f} MB events.jsonl); the app's own start-up "
                  f"(first frame) took {frame:.2f} s and is not counted:")
            for label, t in (("first full chart (sampled)", first), ("exact chart (every event)", exact)):
                print(f"  {label:<28} {t - frame:6.2f} s   (goal: < {goal} s)  "
                      f"{'OK' if goal and t - frame < goal else 'MISSED'}")
            if read is not None:
                print(f"  reference: read the bytes   {read:6.2f} s;  json.loads every line  {parsed:6.2f} s")
            (run / "events.jsonl").unlink()


if __name__ == "__main__":
    main()
