"""Screen snapshots of the dashboard (a run training, finished runs, two GPUs) and the run builder, at 120x40
and 80x24, compared with tests/snapshots/*.txt; and no screen cuts a word with an ellipsis.

Everything on these screens is scripted so the picture is the same on every machine: GPUs (ScriptedSource),
the host panel (a fixed HostInfo), the wall clock the run state reads (frozen), the time zone, and the paths
(fixed folders under the temp dir). The text grid is compared, not colours: a layout change, a cut or a moved
figure fails here; restyling does not.

After an intended change: TUNETOP_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_snapshots.py, then review the
diff of tests/snapshots/ (the .svg beside each .txt shows it in colour).
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import runstate
from engine.telemetry import GpuInfo, HostInfo, ProcInfo, ScriptedSource
from tuiapp.app import TunetopApp

from .builder_helpers import BuilderHost
from .helpers import await_until
from .tui_helpers import GIB, ROOT, demo_events, drive, ev, fake_engine, make_run, screen_text, wait_text

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TUNETOP_UPDATE_SNAPSHOTS") == "1"
NOW = 1_750_000_000.0
# Words that end in an ellipsis on purpose ("loading…" says work is under way); any other word followed by
# "…" was cut.
MEANT = ("loading…", "reading…", "sampling…", "GPUs…", "events…")


def cut_words(text: str) -> list[str]:
    """Lines where a word is cut short with an ellipsis."""
    out = []
    for line in text.splitlines():
        for m in re.finditer(r"\S*\w…", line):
            if not m.group(0).endswith(MEANT):
                out.append(line.strip())
    return out


def fixed_dir(name: str) -> Path:
    # The same path on every run and machine: the runs folder is shown on screen.
    path = Path(tempfile.gettempdir()) / "tunetop-snapshot" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(runstate, "time", SimpleNamespace(time=lambda: NOW))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def compare(name: str, text: str, app) -> None:
    golden = SNAPSHOTS / f"{name}.txt"
    assert not cut_words(text), f"{name}: words cut with an ellipsis:\n" + "\n".join(cut_words(text))
    if UPDATE or not golden.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        golden.write_text(text + "\n")
        (SNAPSHOTS / f"{name}.svg").write_text(app.export_screenshot(title=name))
        if not UPDATE:
            pytest.fail(f"{golden} did not exist: written; review it and commit it")
        return
    want = golden.read_text().rstrip("\n")
    if text != want:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), text.splitlines(), "snapshot", "now", lineterm=""))
        raise AssertionError(f"{name} differs from {golden} (TUNETOP_UPDATE_SNAPSHOTS=1 rewrites it):\n{diff}")


async def settled(pilot, timeout: float = 15.0) -> str:
    """The screen once it stops changing (panels redraw on their own clocks)."""
    last, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.6)
        text = screen_text(pilot.app)
        if text == last:
            return text
        last = text
    return last


def host(_root) -> HostInfo:
    return HostInfo(cpu_percent=37.0, cpu_count=16, load1=5.2, ram_used=21 * GIB, ram_total=64 * GIB,
                    swap_used=0, swap_total=8 * GIB, disk_free=812 * GIB, disk_total=2048 * GIB, disk_path="/data")


def gpus() -> ScriptedSource:
    return ScriptedSource(
        devices=[GpuInfo(0, 0, "NVIDIA GeForce RTX 4090", "GPU-1", int(17.9 * GIB), 24 * GIB, 98, 74, 402.3, 450.0),
                 GpuInfo(1, 1, "NVIDIA GeForce RTX 3090", "GPU-2", int(1.1 * GIB), 24 * GIB, 0, 41, 31.0, 350.0)],
        processes={0: [ProcInfo(4242, int(16.8 * GIB), "python")], 1: []})


def live_events(total: int = 400, steps: int = 150, step_s: float = 2.0) -> list[dict]:
    t0 = NOW - steps * step_s - 1
    out = demo_events(steps=steps, total=total, end=None, t0=t0, step_s=step_s)
    out.insert(1, ev("backoff", t0 + 0.5, step=0, reason="out of memory", action="split",
                     before={"micro_batch": 8, "grad_accum": 2}, after={"micro_batch": 4, "grad_accum": 4},
                     message="before step 1: the probe ran out of memory on the 8 longest rows"))
    out.append(ev("checkpoint", NOW - 0.5, step=steps, path="checkpoints/checkpoint-150"))
    return out


def test_dashboard_during_a_run(frozen):
    root = fixed_dir("dashboard") / "runs"
    live = make_run(root, "20250615-120000-demo", live_events())
    make_run(root, "20250614-091200-demo", demo_events(steps=40, total=40, t0=NOW - 90000))
    make_run(root, "20250613-221500-demo", demo_events(steps=12, total=40, end="stopped", t0=NOW - 150000))
    for run in root.iterdir():   # the same bytes everywhere (the runs panel shows disk use)
        (run / "run.toml").write_text('name = "demo"\n[model]\nname_or_path = "tiny-llama"\n')
    engine = fake_engine(live)
    try:
        app = TunetopApp(gpu_source=gpus(), runs_root=root, host_source=host)

        async def scenario(pilot):
            await wait_text(pilot, "▶ running", "checkpoint at step 150", "4242 python", "812.0 GiB free")
            await await_until(pilot, lambda: any(0x2800 < ord(c) <= 0x28FF for c in screen_text(app)), 20)
            compare("dashboard-120x40", await settled(pilot), app)
            await pilot.resize_terminal(80, 24)
            await wait_text(pilot, "▶ running")
            compare("dashboard-80x24", await settled(pilot), app)
        drive(app, (120, 40), scenario)
    finally:
        engine.kill()
        engine.wait()


def test_builder(frozen, home):
    folder = fixed_dir("builder")
    data = folder / "chat.jsonl"
    shutil.copy(ROOT / "assets" / "data" / "messages.jsonl", data)
    profile = folder / "llama-qlora.toml"
    profile.write_text("\n".join([
        'description = "Llama 3.1 8B, QLoRA on chat data"',
        "[model]", 'name_or_path = "meta-llama/Llama-3.1-8B-Instruct"',
        "[data]", f'path = {json.dumps(str(data))}',
        "[method]", 'type = "qlora"',
        "[training]", "micro_batch = 4", "grad_accum = 8", "max_seq_len = 2048", ""]))
    one = ScriptedSource(devices=[GpuInfo(0, 0, "NVIDIA GeForce RTX 4090", "GPU-1", GIB, 24 * GIB, 0, 40, 30.0, 450.0)],
                         processes={0: []})
    app = BuilderHost(profile=str(profile), gpu_source=one)

    async def scenario(pilot):
        await wait_text(pilot, "llama-qlora", "detected: NVIDIA GeForce RTX 4090", "rows")
        compare("builder-120x40", await settled(pilot), app)
        await pilot.resize_terminal(80, 24)
        await wait_text(pilot, "llama-qlora")
        compare("builder-80x24", await settled(pilot), app)
    drive(app, (120, 40), scenario)
