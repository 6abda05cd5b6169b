"""Benchmark: CPU used by the dashboard while it follows a live run, beside a minimal Textual app.

A real engine trains the tiny model (a long profile, stopped at the end). The dashboard and the reference
(a minimal Textual app with a clock updating once a second) run at the same time, each in its own pseudo
terminal of 120x40 whose output is drained, so both really render. After a warm-up, the CPU time of each
process over the same window is read with psutil. Goal: the dashboard under 2% of one core.

    python tests/bench/bench_cpu.py [--seconds 30] [--warmup 15]
"""
from __future__ import annotations

import argparse
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
GOAL = 2.0

REFERENCE = textwrap.dedent("""
    import time
    from textual.app import App
    from textual.widgets import Footer, Static
    class Clock(App):
        def compose(self):
            yield Static(id="clock")
            yield Footer()
        def on_mount(self):
            self.set_interval(1.0, lambda: self.query_one("#clock").update(time.strftime("%H:%M:%S")))
    Clock().run()
""")


def in_pty(cmd: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)

    def drain():
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass
    threading.Thread(target=drain, daemon=True).start()
    return proc, master


def cpu(proc: subprocess.Popen) -> float:
    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=15)
    args = ap.parse_args()
    from engine import launch, rundir
    from engine.profile import load

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "TUNETOP_HOME": str(home), "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
        env.pop("NO_COLOR", None)
        profile_path = Path(tmp) / "long.toml"
        demo = (ROOT / "profiles" / "demo.toml").read_text()
        profile_path.write_text(demo.replace("../assets", str(ROOT / "assets")).replace("max_steps = 40", "max_steps = 2000"))
        os.environ["TUNETOP_HOME"] = str(home)
        run_dir = launch.launch(load(profile_path))
        procs = []
        try:
            dash, m1 = in_pty([str(Path(sys.executable).parent / "tunetop")], env)
            ref, m2 = in_pty([sys.executable, "-c", REFERENCE], env)
            procs = [(dash, m1), (ref, m2)]
            time.sleep(args.warmup)
            if rundir.alive_pid(run_dir) is None:
                raise SystemExit("the engine is not running: see " + str(run_dir / rundir.LOG))
            steps0 = rundir.read_state(run_dir).step
            c0, r0, t0 = cpu(dash), cpu(ref), time.monotonic()
            time.sleep(args.seconds)
            c1, r1, t1 = cpu(dash), cpu(ref), time.monotonic()
            steps1 = rundir.read_state(run_dir).step
        finally:
            for proc, master in procs:
                try:
                    os.write(master, b"q")
                    proc.wait(10)
                except Exception:
                    proc.kill()
                os.close(master)
            pid = rundir.alive_pid(run_dir)
            if pid:
                os.kill(pid, signal.SIGTERM)
                try:
                    psutil.Process(pid).wait(60)
                except Exception:
                    os.kill(pid, signal.SIGKILL)
    wall = t1 - t0
    d, r = (c1 - c0) / wall * 100, (r1 - r0) / wall * 100
    print(f"CPU over {wall:.0f} s while a live run trained ({steps1 - steps0} steps, "
          f"{(steps1 - steps0) / wall:.2f} step/s), 120x40 pseudo terminal:")
    print(f"  minimal Textual app (1 s clock)  {r:5.2f}% of one core   (reference)")
    print(f"  tunetop dashboard                {d:5.2f}% of one core   (goal: < {GOAL}%)  "
          f"{'OK' if d < GOAL else 'MISSED'}")


if __name__ == "__main__":
    main()
