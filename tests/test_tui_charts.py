"""The dashboard's chart: loss, learning rate and grad norm one key away (g), over steps or tokens seen (x),
drawn from the events (read at once or followed live), and whole at 80x24 and 120x40."""
from __future__ import annotations

import json
import math
import time

import pytest

from engine import rundir
from engine.telemetry import ScriptedSource
from tuiapp.app import TunetopApp
from tuiapp.components.loss_chart import AXIS_W, _label
from tuiapp.series import Series

from .helpers import await_until
from .tui_helpers import demo_events, drive, ev, make_run, screen_text, wait_text

STEPS = 60


def events(steps: int = STEPS, total: int = STEPS, t0: float = 1_700_000_000.0, end: str | None = "completed"):
    """A run whose curves differ in shape: lr warms up then decays, grad norm falls, tokens grow quadratically
    (longer sequences later), so each curve and the tokens axis can be told apart on screen."""
    out = demo_events(steps=steps, total=total, t0=t0, end=end)
    for e in out:
        if e["type"] == "step":
            i = e["step"]
            e["lr"] = lr_at(i)
            e["grad_norm"] = 3.0 / i
            e["tokens_seen"] = i * i * 10
    return out


def lr_at(i: int) -> float:
    return 2e-4 * min(1.0, i / 10) * (1 - i / (2 * STEPS))


def chart_labels(app) -> list[float]:
    """The value axis labels on screen, top to bottom."""
    out = []
    for line in screen_text(app).splitlines():
        if "┤" in line:
            label = line.split("┤")[0][-(AXIS_W - 1):].strip()
            if label:
                out.append(float(label))
    return out


def test_g_cycles_loss_lr_grad_norm_and_x_switches_to_tokens(tmp_path):
    root = tmp_path / "runs"
    evs = events()
    make_run(root, "20250101-000000-demo", evs)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)
    steps = [e for e in evs if e["type"] == "step"]

    async def scenario(pilot):
        await wait_text(pilot, "loss ⠒ train  ◆ eval", f"step 0 … {STEPS}")
        await pilot.press("g")
        await wait_text(pilot, "learning rate ⠒", f"step 0 … {STEPS}")
        view = app.focused_view()
        assert app.chart.shown is view.lr
        # The lr curve is the events' lr, step by step (bins are one step wide below MAX_BINS steps).
        assert [(b, view.lr.sum[b]) for b, c in enumerate(view.lr.cnt) if c] == [(e["step"], e["lr"]) for e in steps]
        # And it is what is drawn: the axis spans the lr's range (a 4 % margin), not the loss's.
        lrs = [e["lr"] for e in steps]
        top, bottom = chart_labels(app)[0], chart_labels(app)[-1]
        span = max(lrs) - min(lrs)
        assert max(lrs) <= top * 1.01 < max(lrs) + span * 0.1 and min(lrs) - span * 0.1 < bottom <= min(lrs) * 1.01
        await pilot.press("g")
        await wait_text(pilot, "grad norm ⠒")
        assert chart_labels(app)[0] == pytest.approx(3.0 + (3.0 - 3.0 / STEPS) * 0.04, rel=0.01)
        await pilot.press("x")
        # tokens_seen of the last step: 60 * 60 * 10 = 36,000.
        await wait_text(pilot, "tokens 0 … 36k")
        assert f"step 0 … {STEPS}" not in screen_text(app)
        await pilot.press("g")
        await wait_text(pilot, "loss ⠒ train  ◆ eval", "tokens 0 … 36k")
        await pilot.press("x", "z")
        await wait_text(pilot, f"step 40 … {STEPS} (recent)")
    drive(app, (120, 40), scenario)


def test_tokens_axis_places_each_step_by_its_tokens_seen():
    loss, tokens = Series(), Series()
    for i in range(1, 101):
        loss.add(i, float(i))
        tokens.add(i, float(i * i))            # tokens grow quadratically: later steps are longer
    by_step = loss.columns(100, 100, 0)
    by_tokens = loss.columns(100, 100, 0, xmap=tokens.at)
    # Step 50 sits half way along the steps axis, a quarter of the way along the tokens axis.
    assert by_step[49][0] == 50
    want: dict[int, list[int]] = {}
    for i in range(1, 101):
        want.setdefault(math.ceil(i * i / 100) - 1, []).append(i)
    assert {x: c[0] for x, c in enumerate(by_tokens) if c} == {x: sum(v) / len(v) for x, v in want.items()}
    assert 50 in want[24] and tokens.at(37) == 37 * 37
    # Past MAX_BINS steps the bins hold several steps: at() interpolates inside one, off by less than a bin.
    wide = Series()
    for i in range(1, 5001):
        wide.add(i, float(i * 2048))
    assert wide.width > 1 and all(abs(wide.at(s) - s * 2048) <= wide.width * 2048 for s in (1, 777, 2500, 5000))


def test_live_events_extend_the_lr_and_grad_norm_curves(tmp_path, fake_engine):
    root = tmp_path / "runs"
    t0 = time.time() - 10
    run = make_run(root, "20250101-000000-live", events(steps=5, total=STEPS, t0=t0, end=None))
    fake_engine(run)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root, poll_interval=0.1)

    async def scenario(pilot):
        await wait_text(pilot, "step 5/60")
        await pilot.press("g")
        await wait_text(pilot, "learning rate ⠒", f"step 0 … {STEPS}")
        with open(run / rundir.EVENTS, "a") as f:
            for i in range(6, 9):
                f.write(json.dumps(ev("step", time.time(), step=i, total_steps=STEPS, epoch=0.1, loss=5.0,
                                      lr=lr_at(i), grad_norm=3.0 / i, tokens_seen=i * i * 10)) + "\n")
        tracker = app.registry.get(run.name)
        assert await await_until(pilot, lambda: tracker.view.lr.count == 8, 20)
        view = tracker.view
        assert (view.lr.last_step, view.lr.last) == (8, lr_at(8))
        assert (view.grad_norm.count, view.grad_norm.last) == (8, 3.0 / 8)
        assert view.tokens.last == 640
        # The chart shows the followed curve (it redraws at its own pace, every few seconds).
        assert await await_until(pilot, lambda: app.chart.shown is not None and app.chart.shown.count == 8, 20)
    drive(app, (120, 40), scenario)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_chart_view_fits_at_the_smallest_and_the_usual_size(tmp_path, size):
    root = tmp_path / "runs"
    make_run(root, "20250101-000000-demo", events())
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, f"step 0 … {STEPS}")
        for keys, title, sub in (((), "loss ⠒ train  ◆ eval", f"step 0 … {STEPS}"),
                                 (("g",), "learning rate ⠒", f"step 0 … {STEPS}"),
                                 (("x", "z", "y"), "learning rate ⠒", "tokens 16k … 36k (recent) · log"),
                                 (("g",), "grad norm ⠒", "tokens 16k … 36k (recent) · log")):
            await pilot.press(*keys)
            text = await wait_text(pilot, title, sub if size[0] >= 120 else sub.split(" ")[0])
            if size[0] < 120:     # a narrow chart: the compact subtitle, whole (no "…" cut at its end)
                assert app.chart.border_subtitle == app.chart.subtitle(app.chart.size.width - 4), text
                assert app.chart.border_subtitle in text
            labels = chart_labels(app)
            assert len(labels) >= 2 and all(math.isfinite(v) for v in labels), text
            # No axis label is cut: each is a whole number (a cut one, "2.00e-", would not parse).
            for line in text.splitlines():
                if "┤" in line:
                    label = line.split("┤")[0][-(AXIS_W - 1):].strip()
                    assert not label or (math.isfinite(float(label)) and len(label) <= AXIS_W - 2), line
    drive(app, size, scenario)


def test_axis_labels_fit_their_column():
    for v in (6.2257, 0.31, 2e-4, 1.5e-5, 1234.5, 12345678.0, -3e-6, 0.0):
        assert len(_label(v)) <= AXIS_W - 2, v
        assert float(_label(v)) == pytest.approx(v, rel=0.06, abs=1e-12)
