"""Benchmark: start-up to first frame of the tunetop dashboard against a minimal Textual app.

Each sample is a fresh interpreter (what a user pays: Python start, imports, CSS, compose, first paint),
timed from just before the process is spawned to the moment the first frame has been rendered (headless
driver, so the terminal's own speed is out of it). The two apps alternate so machine noise hits both.
Goal: tunetop within 2.5x of the minimal app.

    python tests/bench/bench_startup.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOAL = 2.5

COMMON = textwrap.dedent("""
    import sys, time
    def first_frame(app):
        def done():
            print(f"FRAME {time.time():.6f}", flush=True)
            app.exit()
        app.call_after_refresh(done)
""")

MINIMAL = COMMON + textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Footer, Static
    class Minimal(App):
        def compose(self):
            yield Static("hello")
            yield Footer()
        def on_mount(self):
            first_frame(self)
    Minimal().run(headless=True, size=(120, 40))
""")

TUNETOP = COMMON + textwrap.dedent("""
    from tuiapp.app import TunetopApp
    class Timed(TunetopApp):
        def on_mount(self):
            first_frame(self)
    Timed().run(headless=True, size=(120, 40))
""")


def sample(code: str, env: dict) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    line = next((l for l in out.stdout.splitlines() if l.startswith("FRAME ")), None)
    if line is None:
        raise SystemExit(f"no frame:\n{out.stdout}\n{out.stderr}")
    return float(line.split()[1]) - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TUNETOP_HOME": home, "PYTHONPATH": str(ROOT)}
        sample(MINIMAL, env), sample(TUNETOP, env)          # warm the file cache for both
        mins, tts = [], []
        for _ in range(args.rounds):
            mins.append(sample(MINIMAL, env))
            tts.append(sample(TUNETOP, env))
    m, t = statistics.median(mins), statistics.median(tts)
    print(f"start-up to first frame, median of {args.rounds} (headless, fresh interpreter each):")
    print(f"  minimal Textual app  {m * 1000:7.0f} ms   (reference)")
    print(f"  tunetop dashboard    {t * 1000:7.0f} ms   = {t / m:.2f}x the reference   (goal: <= {GOAL}x)  "
          f"{'OK' if t / m <= GOAL else 'MISSED'}")


if __name__ == "__main__":
    main()
