"""Benchmark: `tunetop ls` on long histories, side by side with a plain scan that parses only the start
and end lines of each events.jsonl (it still reads every byte: the way a simple reader finds them).

Cases (generated in a temp dir, removed after):
  200 runs      200 run folders, 2,000 step events each (folded whole: under rundir.FULL_READ_BYTES)
  1M steps      one run with 1,000,000 step events (about 250 MB, dense)
  1 GiB sparse  one run whose events.jsonl is 1 GiB: a start line, a 1 GiB hole, 50 steps and an end

Each side runs in a fresh interpreter; the figures are the command's own time (interpreter start-up
aside) and the process's peak RSS. Rounds alternate (tunetop, plain, tunetop, ...) after one warm-up
each; printed: median and min-max over the rounds and the per-round ratio. Goals (issues 9 and 15):
1M steps < 0.3 s and < 100 MB; 1 GiB < 1 s and < 200 MB. Timings on a shared machine are noisy.

    python tests/bench/bench_ls.py [--rounds 3] [--cases 200runs 1M 1GiB]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TUNETOP = """
import resource, sys, time
from tuiapp.cli import main
t = time.perf_counter()
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()) as out:
    main(["ls"])
took = time.perf_counter() - t
lines = out.getvalue().splitlines()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(lines) - 1)
"""

# The plain way: read every line of every run's events.jsonl, json.loads only start and end lines.
PLAIN = """
import json, os, resource, sys, time
t = time.perf_counter()
root = os.path.join(os.environ["TUNETOP_HOME"], "runs")
rows = 0
for name in sorted(os.listdir(root), reverse=True):
    start = end = None
    with open(os.path.join(root, name, "events.jsonl"), "rb") as f:
        for line in f:
            if b'"type":"start"' in line or b'"type":"end"' in line:
                e = json.loads(line)
                if e["type"] == "start" and start is None:
                    start = e
                else:
                    end = e
    rows += 1
took = time.perf_counter() - t
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rows)
"""

STEP = ('{{"v":1,"t":{t:.3f},"type":"step","step":{i},"total_steps":{n},"epoch":0.5,"loss":1.2345,'
        '"lr":0.0002,"grad_norm":0.31,"tokens_seen":{k},"step_time":0.5,"samples_per_s":32.0,'
        '"tokens_per_s":4096.0,"memory":{{"rss":3221225472}}}}\n')


def write_run(root: Path, name: str, n_steps: int, hole: int = 0) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "run.toml").write_text(f'name = "{name}"\n')
    t = 1.7e9
    with open(run / "events.jsonl", "w") as f:
        f.write(json.dumps({"v": 1, "t": t, "type": "start", "run_id": name, "profile": "bench", "model": "m",
                            "method": "lora", "total_steps": n_steps}, separators=(",", ":")) + "\n")
        if hole:
            f.flush()
            f.truncate(hole)
            f.seek(hole)
            f.write("\n")
        first = n_steps - 50 if hole else 1
        buf = []
        for i in range(first, n_steps + 1):
            buf.append(STEP.format(t=t + i * 0.5, i=i, n=n_steps, k=i * 2048))
            if len(buf) >= 10_000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
        f.write(json.dumps({"v": 1, "t": t + n_steps * 0.5, "type": "end", "status": "completed",
                            "step": n_steps}, separators=(",", ":")) + "\n")


def make_case(case: str, home: Path) -> None:
    runs = home / "runs"
    if case == "200runs":
        for k in range(200):
            write_run(runs, f"20250101-{k:06d}-bench", 2_000)
    elif case == "1M":
        write_run(runs, "20250101-000000-1M", 1_000_000)
    elif case == "1GiB":
        write_run(runs, "20250101-000000-1GiB", 1_000_000, hole=1 << 30)


def measure(code: str, home: Path) -> tuple[float, float, int]:
    env = {**os.environ, "TUNETOP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True, timeout=600)
    took, rss_kib, rows = out.stdout.split()
    return float(took), int(rss_kib) / 1024, int(rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=["200runs", "1M", "1GiB"])
    args = ap.parse_args()
    print(f"{'case':<10} {'side':<8} {'time s (median, min-max)':<28} {'peak MB':>8}  rows   "
          f"ratio tunetop/plain per round")
    for case in args.cases:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-ls-{case}-"))
        try:
            t0 = time.perf_counter()
            make_case(case, tmp)
            made = time.perf_counter() - t0
            measure(TUNETOP, tmp)
            measure(PLAIN, tmp)                # warm-up: page cache, .pyc
            ours, plain = [], []
            for _ in range(args.rounds):
                ours.append(measure(TUNETOP, tmp))
                plain.append(measure(PLAIN, tmp))
            ratios = [a[0] / b[0] for a, b in zip(ours, plain)]
            for side, rows in (("tunetop", ours), ("plain", plain)):
                times = [r[0] for r in rows]
                print(f"{case:<10} {side:<8} {statistics.median(times):>7.3f} ({min(times):.3f}-{max(times):.3f})"
                      f"{'':<8} {max(r[1] for r in rows):>8.1f}  {rows[0][2]:<5}" +
                      (f"  {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
                       if side == "tunetop" else ""))
            print(f"{'':<10} (generated in {made:.1f} s; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
