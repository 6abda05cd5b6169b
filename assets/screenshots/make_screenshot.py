"""Regenerate dashboard.svg (and dashboard.png when rsvg-convert is installed): the dashboard at 120x40 with
a scripted pair of GPUs, a run training (its engine marked on GPU 0) and a few finished runs.

    python assets/screenshots/make_screenshot.py
"""
from __future__ import annotations

import asyncio
import html
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from engine import rundir  # noqa: E402
from engine.profile import dumps, load_named  # noqa: E402
from engine.telemetry import GpuInfo, HostInfo, ProcInfo, ScriptedSource  # noqa: E402

GIB = 1 << 30


def write_run(root: Path, run_id: str, steps: int, total: int, end: str | None, t0: float, seed: int,
              profile: str = "llama3-8b-qlora", model: str = "meta-llama/Llama-3.1-8B-Instruct",
              method: str = "qlora") -> Path:
    rng = random.Random(seed)
    run = root / run_id
    run.mkdir(parents=True)
    (run / rundir.RUN_TOML).write_text(dumps(load_named("demo")))
    lines = [dict(type="start", t=t0, run_id=run_id, profile=profile, method=method,
                  model=model, device="cuda", precision="bf16",
                  micro_batch=4, grad_accum=8, effective_batch=32, total_steps=total)]
    for i in range(1, steps + 1):
        loss = 0.9 + 1.4 * math.exp(-i / 180) + rng.gauss(0, 0.05)
        lines.append(dict(type="step", t=t0 + i * 2.1, step=i, total_steps=total, epoch=i / total * 3,
                          loss=loss, lr=2e-4 * min(1, i / 30) * (1 - i / total / 1.2), tokens_seen=i * 32 * 1900,
                          memory={"cuda_peak": int(14.2 * GIB), "rss": 6 * GIB}))
        if i % 100 == 0:
            lines.append(dict(type="eval", t=t0 + i * 2.1 + 1, step=i, eval_loss=0.95 + 1.3 * math.exp(-i / 200)))
    if steps > 60:
        lines.insert(62, dict(type="backoff", t=t0 + 61 * 2.1, step=61, reason="CUDA out of memory",
                              message="CUDA out of memory at step 61; the step is split in 2, effective batch kept",
                              before={"micro_batch": 4, "grad_accum": 8}, after={"micro_batch": 2, "grad_accum": 16}))
        lines.insert(200, dict(type="checkpoint", t=t0 + 200 * 2.1, step=200, path="checkpoints/checkpoint-200"))
    if end:
        lines.append(dict(type="end", t=t0 + steps * 2.1 + 5, status=end, step=steps, total_steps=total))
    with open(run / rundir.EVENTS, "w") as f:
        for e in lines:
            f.write(json.dumps({"v": 1, **e}, separators=(",", ":")) + "\n")
    (run / rundir.LOG).write_text("".join(
        f"{{'loss': '{0.9 + 1.4 * math.exp(-i / 180):.4f}', 'grad_norm': '0.41', 'learning_rate': '0.0002', "
        f"'epoch': '{i / total * 3:.3f}'}}\n" for i in range(max(1, steps - 12), steps + 1)))
    return run


async def shoot(root: Path, engine_pid: int) -> None:
    from tuiapp.app import TunetopApp
    src = ScriptedSource(devices=[
        GpuInfo(0, 0, "NVIDIA GeForce RTX 4090", "GPU-1", int(17.9 * GIB), 24 * GIB, 98, 74, 402.3, 450.0),
        GpuInfo(1, 1, "NVIDIA GeForce RTX 3090", "GPU-2", int(1.1 * GIB), 24 * GIB, 0, 41, 31.0, 350.0)],
        processes={0: [ProcInfo(engine_pid, int(16.8 * GIB), "python"), ProcInfo(2231, int(0.4 * GIB), "Xorg")],
                   1: [ProcInfo(2231, int(0.3 * GIB), "Xorg")]})
    host = HostInfo(cpu_percent=23.0, cpu_count=16, load1=3.1, ram_used=19 * GIB, ram_total=64 * GIB, swap_used=0,
                    swap_total=8 * GIB, disk_free=812 * GIB, disk_total=2048 * GIB, disk_path=str(root))
    app = TunetopApp(gpu_source=src, runs_root=root, process_interval=0.3, host_source=lambda _root: host)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(60):
            await pilot.pause(0.1)
        app.save_screenshot(filename="dashboard.svg", path=str(HERE))


def main() -> None:
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        live = write_run(root, time.strftime("%Y%m%d-%H%M%S-llama3-8b-qlora", time.localtime(now - 1300)),
                         590, 1200, None, now - 590 * 2.1 - 40, 1)
        write_run(root, "20250614-091200-mistral-7b-lora", 800, 800, "completed", now - 90000, 2,
                  "mistral-7b-lora", "mistralai/Mistral-7B-Instruct-v0.3", "lora")
        write_run(root, "20250613-221500-qwen2.5-3b-full", 240, 1000, "stopped", now - 150000, 3,
                  "qwen2.5-3b-full", "Qwen/Qwen2.5-3B-Instruct", "full")
        write_run(root, "20250612-180000-demo", 17, 40, None, now - 240000, 4, "demo", "/assets/tiny-llama", "lora")
        # A live process stands in for the engine, so the run reads as running and its GPU process is marked.
        # It holds the run's lock, as a launched engine does (alive = the lock is held).
        from engine import runlock
        fd = runlock.acquire(live)
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(fd,))
        os.close(fd)
        try:
            import psutil
            (live / rundir.PID).write_text(json.dumps({"pid": proc.pid,
                                                       "create_time": psutil.Process(proc.pid).create_time()}))
            asyncio.run(shoot(root, proc.pid))
        finally:
            proc.kill()
    svg = HERE / "dashboard.svg"
    print(f"wrote {svg}")
    if shutil.which("rsvg-convert"):
        with tempfile.TemporaryDirectory() as tmp:
            fixed = Path(tmp) / "fixed.svg"
            fixed.write_text(one_glyph_per_cell(svg.read_text()))
            subprocess.run(["rsvg-convert", "-o", str(HERE / "dashboard.png"), str(fixed)], check=True)
        print(f"wrote {HERE / 'dashboard.png'}")


def one_glyph_per_cell(svg: str) -> str:
    """rsvg-convert ignores textLength, braille falls back to a narrower font, and a span's edge spaces
    collapse: place every character of such a run at its own cell (for the PNG only; the SVG stays as
    Textual wrote it)."""
    pattern = re.compile(r'<text ([^>]*?)x="([0-9.]+)"([^>]*?)textLength="([0-9.]+)"([^>]*)>([^<]*)</text>')

    def split(m: re.Match) -> str:
        text = html.unescape(m.group(6))
        if not text or (all(ord(c) < 0x2500 for c in text) and text[0] != "\xa0" and text[-1] != "\xa0"):
            return m.group(0)
        x, width = float(m.group(2)), float(m.group(4)) / len(text)
        return "".join(f'<text {m.group(1)}x="{x + i * width:.1f}"{m.group(3)}textLength="{width:.1f}"{m.group(5)}>'
                       f'{html.escape(c).replace(" ", "&#160;")}</text>' for i, c in enumerate(text))
    return pattern.sub(split, svg)


if __name__ == "__main__":
    main()
