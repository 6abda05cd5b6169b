"""Pilot tests of the dashboard with made-up run folders and scripted GPU sources (fast; no engine)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from .helpers import await_until
from .tui_helpers import GIB, HEAVY, ROOT, demo_events, drive, ev, make_run, screen_text, two_gpus, wait_text

from engine import rundir
from engine.telemetry import ProcInfo, ScriptedSource
from tuiapp.app import TunetopApp
from tuiapp.components.confirm import ConfirmScreen
from tuiapp.components.help_screen import HelpScreen

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def root(tmp_path):
    return tmp_path / "runs"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_panels_render_with_two_gpus(root, size):
    make_run(root, "20250101-000000-demo", demo_events(steps=40))
    app = TunetopApp(gpu_source=two_gpus(), runs_root=root)

    async def scenario(pilot):
        # Panels redraw on their own clocks (figures 1 s, chart 3 s): wait for each before reading the screen.
        await wait_text(pilot, "NVIDIA H100 80GB HBM3", "NVIDIA A100", "62.0/80.0 GiB", "3.0/40.0 GiB",
                        "97%", "71°C", "312/700 W", "completed", "20250101-000000-demo", "40/40",
                        "batch 8×2 = 16", "5.6")
        await await_until(pilot, lambda: any(0x2800 < ord(c) <= 0x28FF for c in screen_text(app)), 20)
        text = screen_text(app)
        assert "n/a" in text                          # the A100's utilisation and power are unknown
        assert "CPU" in text and "RAM" in text and "swap" in text and "disk" in text
        assert "5.6" in text                          # last loss 6.0 - 0.40
        assert "eval" in text and "batch 8×2 = 16" in text
        assert "now " not in text and "avg 1.00 step/s" in text   # a finished run has no speed "now"
        assert "⣀" in text or "⠉" in text or any(0x2800 < ord(c) <= 0x28FF for c in text)   # the chart drew
        if size == (120, 40):
            assert "4242 python 60.0 GiB" in text      # processes fit on a large screen
            assert "step 40/40 · loss" in text and "eval at step 40" in text   # the event tail
    drive(app, size, scenario)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_gpu_and_the_rest_works(root, size):
    make_run(root, "20250101-000000-demo", demo_events(steps=40))
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "no NVIDIA GPU detected", "completed", "40/40", "RAM")
    drive(app, size, scenario)


def test_no_driver_with_real_nvml_says_so(root):
    # This machine has no NVIDIA driver: the production source must say so, not raise.
    app = TunetopApp(runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "no NVIDIA GPU detected")
    drive(app, (80, 24), scenario)


def test_engine_processes_are_marked_with_their_run(root, fake_engine):
    run = make_run(root, "20250101-000000-live", demo_events(steps=5, end=None, t0=time.time() - 6))
    engine = fake_engine(run)
    src = two_gpus({0: [ProcInfo(engine.pid, 12 * GIB, "python"), ProcInfo(999, GIB, "Xorg")]})
    app = TunetopApp(gpu_source=src, runs_root=root, process_interval=0.2)

    async def scenario(pilot):
        text = await wait_text(pilot, "tunetop 20250101-000000-live", "running")
        assert "999 Xorg" in text
        # ETA from the events' own timestamps (1 step/s, 35 steps to go), right after attaching.
        assert "ETA 0:35" in text and "now 1.00 step/s" in text
    drive(app, (120, 40), scenario)


def test_gpu_that_vanishes_mid_session(root):
    src = two_gpus()
    app = TunetopApp(gpu_source=src, runs_root=root, device_interval=0.1, process_interval=0.1)

    async def scenario(pilot):
        await wait_text(pilot, "NVIDIA H100")
        src.fail = RuntimeError("NVML_ERROR_GPU_IS_LOST")
        text = await wait_text(pilot, "GPU telemetry failed", "no reading")
        assert "runs" in text                           # the rest of the dashboard is still there
        src.fail = None                                 # it comes back
        await wait_text(pilot, "62.0/80.0 GiB")
    drive(app, (120, 40), scenario)


def test_bad_run_folders_are_shown_with_what_is_wrong(root):
    good = demo_events(steps=12)
    lines = [__import__("json").dumps(e) for e in good]
    make_run(root, "20250101-000001-corrupt",
             ("\n".join(lines[:5] + ["this is not json", "{\"v\":1,"] + lines[5:]) + "\n").encode())
    make_run(root, "20250101-000002-torn", ("\n".join(lines[:8]) + "\n" + lines[8][:25]).encode())
    make_run(root, "20250101-000003-empty", b"")
    make_run(root, "20250101-000004-notoml", demo_events(steps=3), toml=False)
    make_run(root, "20250101-000005-future",
             [dict(e, v=2) for e in demo_events(steps=3, end=None)] + [ev("telepathy", 1.7e9 + 9, mood="good")])
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "runs (5)")
        expect = {
            "20250101-000001-corrupt": "not valid events",
            "20250101-000002-torn": "torn line",
            "20250101-000003-empty": "failed to start",
            "20250101-000004-notoml": "run.toml is missing",
            "20250101-000005-future": "schema version 2",
        }
        for run_id, needle in expect.items():
            app.query_one("#table").select_run(run_id)
            await wait_text(pilot, f"run {run_id}", needle)
        # The corrupt run still shows its real figures around the garbage.
        app.query_one("#table").select_run("20250101-000001-corrupt")
        await wait_text(pilot, "12/40")
        app.query_one("#table").select_run("20250101-000005-future")
        await wait_text(pilot, "telepathy")
        await pilot.press("r")                          # resume a run without run.toml: refused, said why
        await await_until(pilot, lambda: False, timeout=0.2)
        app.query_one("#table").select_run("20250101-000004-notoml")
        await pilot.press("r")
        await await_until(pilot, lambda: any("cannot be resumed" in str(n.message) for n in app._notifications), 5)
    drive(app, (120, 40), scenario)


def test_unreadable_runs_root_is_reported_in_the_runs_panel(tmp_path):
    root = tmp_path / "not-a-folder"
    root.write_text("a file where the runs folder should be")
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "cannot read the runs folder")
        await wait_text(pilot, "RAM")                    # the host panel still works
    drive(app, (80, 24), scenario)


def test_help_palette_and_quit_leaves_runs_alone(root, fake_engine):
    run = make_run(root, "20250101-000000-live", demo_events(steps=5, end=None, t0=time.time() - 6))
    engine = fake_engine(run)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "running")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for key in ("ctrl+p", "stop the run", "resume", "delete", "launch a saved profile", "quit"):
            assert key in text
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Stop run", "Resume run", "Open run log", "Delete run", "New run", "Launch profile"):
            assert title in titles
        await pilot.press("ctrl+p")
        await await_until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", 5)
        await pilot.press(*"stop run")
        await pilot.pause(0.5)
        await pilot.press("enter")                   # the palette runs the same action as s
        assert await await_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
        await pilot.press("n")
        await pilot.press("q")
    drive(app, (80, 24), scenario)
    assert app.exit_note and "1 run still training" in app.exit_note
    assert engine.poll() is None                     # quitting never stops a run


def test_stop_asks_first_and_delete_refuses_an_active_run(root, fake_engine):
    run = make_run(root, "20250101-000000-live", demo_events(steps=5, end=None, t0=time.time() - 6))
    engine = fake_engine(run)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "running")
        await pilot.press("d")
        await await_until(pilot, lambda: any("still running" in str(n.message) for n in app._notifications), 5)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")                       # cancelled: nothing sent
        await pilot.pause(0.3)
        assert engine.poll() is None
    drive(app, (80, 24), scenario)


def test_delete_a_finished_run_after_confirmation(root):
    keep = make_run(root, "20250101-000001-keep", demo_events(steps=3))
    gone = make_run(root, "20250101-000002-gone", demo_events(steps=3))
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "runs (2)")
        app.query_one("#table").select_run(gone.name)
        await wait_text(pilot, f"run {gone.name}")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")                      # the default button is Cancel: enter deletes nothing
        assert await await_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), 5)
        await pilot.pause(0.3)
        assert gone.exists()
        await pilot.press("d")
        await pilot.press("y")
        await wait_text(pilot, "runs (1)")
        assert not gone.exists() and keep.exists()
    drive(app, (80, 24), scenario)


def test_logs_new_run_and_launch_picker(root):
    make_run(root, "20250101-000000-demo", demo_events(steps=3), log="line one\nline two\n")
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "completed")
        await pilot.press("l")
        await wait_text(pilot, "engine log: 20250101-000000-demo", "line two")
        await pilot.press("escape")
        await pilot.press("n")
        await pilot.pause(0.3)
        builder = type(app.screen).__name__ == "RunBuilderScreen"
        assert builder or any("run builder not available" in str(n.message) for n in app._notifications)
        if builder:
            await pilot.press("escape")
        await pilot.press("L")
        await wait_text(pilot, "launch a profile", "demo")
        await pilot.press("escape")
        await wait_text(pilot, "runs (1)")
    drive(app, (120, 40), scenario)


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
def test_themes_and_no_color(root, theme, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    make_run(root, "20250101-000000-demo", demo_events(steps=40))
    app = TunetopApp(gpu_source=two_gpus(), runs_root=root)
    assert app.no_color

    async def scenario(pilot):
        app.theme = theme
        text = await wait_text(pilot, "✓ completed", "NVIDIA H100")
        assert "█" in text                               # bars carry the figure without colour
    drive(app, (80, 24), scenario)


def test_importing_and_starting_the_app_loads_no_training_library(tmp_path):
    code = f"""
import asyncio, sys
from pathlib import Path
from engine.telemetry import ScriptedSource
from tuiapp.app import TunetopApp
async def main():
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=Path({str(tmp_path)!r}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(1.0)
asyncio.run(main())
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})
print("HEAVY:", heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stdout, out.stdout


def test_layout_follows_the_terminal_size(root):
    make_run(root, "20250101-000000-demo", demo_events(steps=40))
    app = TunetopApp(gpu_source=two_gpus(), runs_root=root)

    async def scenario(pilot):
        # The event tail stays at 80x24 (it used to vanish there): the run's last event is on screen.
        text = await wait_text(pilot, "completed", "completed at step 40")
        assert "MODEL" not in text and "PROFILE" not in text
        await pilot.resize_terminal(160, 50)
        text = await wait_text(pilot, "MODEL", "PROFILE", "METHOD", "eval at step 40", "4242 python")
        await pilot.resize_terminal(80, 24)
        text = await wait_text(pilot, "completed")
        assert "MODEL" not in text
    drive(app, (80, 24), scenario)


def test_hung_and_stalled_runs_show_with_their_glyph(root, monkeypatch, fake_engine):
    monkeypatch.setenv("TUNETOP_HUNG_AFTER_S", "5")
    monkeypatch.setenv("TUNETOP_STALL_MIN_S", "5")
    now = time.time()
    hung = make_run(root, "20250101-000001-hung", demo_events(steps=5, end=None, t0=now - 8))
    stalled = make_run(root, "20250101-000002-stalled", demo_events(steps=5, end=None, t0=now - 600))
    fake_engine(hung), fake_engine(stalled)
    (hung / rundir.HEARTBEAT).write_text("")
    os.utime(hung / rundir.HEARTBEAT, (now - 120, now - 120))      # frozen: no heartbeat for 2 minutes
    (stalled / rundir.HEARTBEAT).write_text("")                    # alive, but no step for 10 minutes
    beating = threading.Event()

    def beat():                              # the stalled engine's heartbeat thread goes on
        while not beating.wait(1.0):
            os.utime(stalled / rundir.HEARTBEAT)
    threading.Thread(target=beat, daemon=True).start()
    try:
        app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

        async def scenario(pilot):
            text = await wait_text(pilot, "⏸ hung", "⧗ stalled")        # both in the runs table
            app.query_one("#table").select_run(hung.name)
            await wait_text(pilot, f"run {hung.name}", "no heartbeat for")
            app.query_one("#table").select_run(stalled.name)
            await wait_text(pilot, f"run {stalled.name}", "no step for")
            assert "running" not in text
        drive(app, (120, 40), scenario)
    finally:
        beating.set()


def test_loss_chart_zooms_to_the_recent_steps_and_takes_a_log_scale(root):
    events = demo_events(steps=200, total=200)
    for e in events:
        if e["type"] == "step":       # a first loss far above the rest squashes the whole-run view
            e["loss"] = 50.0 if e["step"] == 1 else 2.0 - e["step"] / 400
        elif e["type"] == "eval":
            e["eval_loss"] = 1.6
    make_run(root, "20250101-000000-demo", events)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    def top_label() -> float:
        chart = next(line for line in screen_text(app).splitlines() if "┤" in line)
        return float(chart.split("┤")[0].split("│")[-1].strip())

    async def scenario(pilot):
        await wait_text(pilot, "step 0 … 200")
        await await_until(pilot, lambda: any(0x2800 < ord(c) <= 0x28FF for c in screen_text(app)), 20)
        assert top_label() > 40                            # the whole run: the first loss sets the scale
        await pilot.press("z")
        await wait_text(pilot, "step 160 … 200 (recent)")
        assert top_label() < 2                             # the recent steps fill the chart
        await pilot.press("z", "y")
        await wait_text(pilot, "step 0 … 200 · log")
        assert top_label() > 40
        assert "?" not in app.chart.subtitle()
    drive(app, (120, 40), scenario)


def test_the_runs_table_row_moves_with_the_run_panel(root, fake_engine):
    t0 = time.time() - 6
    run = make_run(root, "20250101-000000-live", demo_events(steps=5, end=None, t0=t0))
    fake_engine(run)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    def row() -> str:
        return next((line for line in screen_text(app).splitlines() if "20250101-000000-live" in line
                     and "run " not in line), "")

    async def scenario(pilot):
        await wait_text(pilot, "step 5/40")
        for step in range(6, 12):
            with open(run / rundir.EVENTS, "a") as f:
                f.write(json.dumps(ev("step", time.time(), step=step, total_steps=40, loss=5.0, tokens_seen=step * 100)) + "\n")
            await wait_text(pilot, f"step {step}/40")
            # The table used to lag the panel by up to 5 s (77 steps against 162 in one report).
            assert f"{step}/40" in row(), row()
    drive(app, (120, 40), scenario)
