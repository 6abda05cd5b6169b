"""The dashboard following real engine processes (the tiny model on CPU): slow, seconds to minutes each."""
from __future__ import annotations

import os
import signal

import pytest

from engine import launch, rundir
from engine.events import read_all
from engine.profile import load
from engine.telemetry import ScriptedSource
from tuiapp import fmt
from tuiapp.app import TunetopApp
from tuiapp.components.confirm import ConfirmScreen

from .helpers import await_until
from .tui_helpers import drive, screen_text, wait_text

pytestmark = pytest.mark.slow


def _kill(run_dir):
    pid = rundir.alive_pid(run_dir)
    if pid:
        os.kill(pid, signal.SIGKILL)


def test_live_run_is_followed_until_it_completes(tmp_path, home, make_profile):
    profile = load(make_profile("live", {"training": {"max_steps": 12, "save_steps": 6, "eval_steps": 6},
                                         "data": {"eval_fraction": 0.05}}))
    root = tmp_path / "runs"
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root, poll_interval=0.25)
    run_dir = None

    async def scenario(pilot):
        nonlocal run_dir
        run_dir = launch.launch(profile, root)
        await wait_text(pilot, run_dir.name)
        tracker = lambda: app.registry.get(run_dir.name)   # noqa: E731
        assert await await_until(pilot, lambda: tracker() and tracker().view.state.step >= 1, 300), screen_text(app)
        assert "running" in screen_text(app)
        assert await await_until(pilot, lambda: tracker().view.state.status == "completed", 400), screen_text(app)
        await pilot.pause(1.0)
        steps = [e for e in read_all(run_dir / rundir.EVENTS) if e["type"] == "step"]
        evals = [e for e in read_all(run_dir / rundir.EVENTS) if e["type"] == "eval"]
        last = steps[-1]
        text = screen_text(app)
        assert f"{last['step']}/{last['total_steps']}" in text and "✓ completed" in text
        assert f"loss {fmt.number(last['loss'])}" in text          # the detail panel
        assert fmt.number(last["loss"]) in text.split("runs (")[1]   # and the runs table
        data = tracker().view
        assert data.loss.count == len(steps) and data.loss.last == pytest.approx(last["loss"])
        assert data.evals.count == len(evals) >= 1
        # The learning rate and grad norm curves were followed live too (g shows them).
        assert data.lr.count == sum(s["lr"] is not None for s in steps) >= 1
        assert data.grad_norm.count == sum(s["grad_norm"] is not None for s in steps) >= 1
        assert data.tokens.last == last["tokens_seen"] > 0
        assert data.state.status == "completed"
    try:
        drive(app, (120, 40), scenario)
    finally:
        if run_dir:
            _kill(run_dir)


def test_launch_from_the_picker_then_stop_from_the_runs_table_leaves_a_resumable_checkpoint(
        tmp_path, home, make_profile):
    from engine import paths
    from engine.profile import list_profiles
    # A profile of the user's: the launch picker (L) lists it beside the bundled ones.
    user = paths.user_profiles()
    user.mkdir(parents=True)
    (user / "stopme.toml").write_text(make_profile("stopme", {"training": {"max_steps": 5000, "save_steps": 100000}})
                                      .read_text())
    index = [p.stem for p in list_profiles()].index("stopme")
    root = tmp_path / "runs"
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root, poll_interval=0.25)
    run_dir = None

    async def scenario(pilot):
        nonlocal run_dir
        await pilot.press("L")
        await wait_text(pilot, "launch a profile", "stopme")
        await pilot.press(*["down"] * index, "enter")
        assert await await_until(pilot, lambda: root.is_dir() and any(root.iterdir()), 30)
        run_dir = next(root.iterdir())
        tracker = lambda: app.registry.get(run_dir.name)   # noqa: E731
        assert await await_until(pilot, lambda: tracker() and tracker().view.state.step >= 2, 300), screen_text(app)
        assert app.focus_run == run_dir.name                  # the launched run took the focus
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert await await_until(pilot, lambda: tracker().view.state.status == "stopped", 300), screen_text(app)
        await wait_text(pilot, "■ stopped")
        end = [e for e in read_all(run_dir / rundir.EVENTS) if e["type"] == "end"][-1]
        ckpt = rundir.last_checkpoint(run_dir)
        assert end["status"] == "stopped" and ckpt is not None
        assert ckpt.name == f"checkpoint-{end['step']}"          # the very step it stopped at
        assert end["step"] < 5000
    try:
        drive(app, (80, 24), scenario)
    finally:
        if run_dir:
            _kill(run_dir)
