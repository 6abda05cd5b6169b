"""The dashboard's history keys: space marks runs, c compares them (overlaid loss, legend, x by step or tokens,
the table of what differs), / filters the runs table, and a run's end arriving live pops a toast and rings
the bell. Pilot at 120x40 and 80x24; run folders written with the real event writer."""
from __future__ import annotations

import time

import pytest

from engine.events import EventWriter
from engine.profile import dumps, load_named
from engine.telemetry import ScriptedSource
from tuiapp.app import TunetopApp
from tuiapp.components.compare_screen import CompareScreen
from tuiapp.components.multi_chart import MultiChart

from .helpers import await_until
from .tui_helpers import demo_events, drive, make_run, wait_text


def _run(root, name, lr, steps, start):
    profile = load_named("demo")
    profile.training.learning_rate = lr
    run = make_run(root, name, demo_events(steps=steps, total=steps, t0=start), toml=False)
    (run / "run.toml").write_text(dumps(profile))
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    a = _run(root, "20261201-010000-demo", 3e-3, 30, 1_790_000_000.0)
    b = _run(root, "20261201-020000-demo", 1e-3, 20, 1_790_010_000.0)
    c = _run(root, "20261201-030000-other", 3e-3, 10, 1_790_020_000.0)
    return root, (a, b, c)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_mark_two_runs_and_compare_them(runs, size):
    root, (a, b, c) = runs
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, a.name[:15])
        for run in (a, b):
            app.table.select_run(run.name)          # the cursor's run is the one in focus
            assert await await_until(pilot, lambda: app.focus_run == run.name)
            await pilot.press("space")
        assert app.marked == [a.name, b.name]
        assert "2 marked" in str(app.runs_box.border_subtitle)
        await pilot.press("c")
        assert await await_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded)
        screen = app.screen
        text = await wait_text(pilot, "train loss of 2 runs", "training.learning_rate", "final loss")
        chart = screen.query_one(MultiChart)
        assert len(chart.series) == 2 and all(len(pts) >= 10 for _, pts in chart.series)
        drawn = str(chart.render())
        assert sum(ch >= "\u2801" and ch <= "\u28ff" for ch in drawn) > 10
        assert f"1 {a.name}" in text and f"2 {b.name}" in text               # the legend
        rows = {screen.table.get_row_at(i)[0]: screen.table.get_row_at(i) for i in range(screen.table.row_count)}
        assert rows["training.learning_rate"][1:] == ["0.003", "0.001"]
        assert rows["steps"][1:] == ["30/30", "20/20"]
        await pilot.press("x")
        await wait_text(pilot, "x = tokens")
        assert max(x for x, _ in chart.series[0][1]) == 3000                  # tokens_seen, not steps
        await pilot.press("e")
        await wait_text(pilot, "eval loss of 2 runs")
        await pilot.press("escape")
        assert await await_until(pilot, lambda: not isinstance(app.screen, CompareScreen))
    drive(app, size, scenario)


def test_compare_needs_two_marked_runs_and_filter_narrows_the_table(runs):
    root, (a, b, c) = runs
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, a.name[:15])
        await pilot.press("c")
        assert not isinstance(app.screen, CompareScreen)
        assert await await_until(pilot, lambda: any("mark 2 to 6 runs" in str(n.message) for n in app._notifications))
        await pilot.press("slash")
        await pilot.press(*"other")
        await pilot.press("enter")
        assert await await_until(pilot, lambda: app.table.row_count == 1)
        assert "filter: other" in str(app.runs_box.border_subtitle)
        await pilot.press("slash")
        await pilot.press("ctrl+a", "ctrl+k", "enter")
        assert await await_until(pilot, lambda: app.table.row_count == 3)
    drive(app, (80, 24), scenario)


def test_an_end_arriving_live_pops_a_toast_and_rings_the_bell(runs):
    root, (a, b, c) = runs
    live = make_run(root, "20261201-040000-live", demo_events(steps=3, total=10, end=None, t0=time.time() - 5))
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)
    bells = []
    app.bell = lambda: bells.append(1)

    async def scenario(pilot):
        await wait_text(pilot, live.name[:15])
        await pilot.pause(1.5)
        assert not bells                                      # old news (the finished runs) is not announced
        w = EventWriter(live / "events.jsonl")
        w.write("backoff", step=4, reason="oom", action="split", message="step 4: out of memory; split in 2")
        w.write("end", status="failed", step=4, total_steps=10, error="boom", hint="try again")
        w.close()
        assert await await_until(pilot, lambda: len(bells) == 2, timeout=15)
        titles = [str(n.title) for n in app._notifications]
        assert f"{live.name} out-of-memory backoff" in titles and f"{live.name} failed" in titles
    drive(app, (120, 40), scenario)
