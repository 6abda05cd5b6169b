"""The run builder's live panels (VRAM estimate against detected or picked GPUs, dataset preview with the
tokenizer), its dialogs, and how the dashboard opens it (n) and focuses the run it launches."""
from __future__ import annotations

import pytest

from engine import rundir
from engine.telemetry import ScriptedSource
from tuiapp.app import TunetopApp
from tuiapp.builder import RunBuilderScreen
from tuiapp.builder import preview_panel
from tuiapp.builder import screen as screen_module
from tuiapp.builder.dialogs import BuilderHelp, CapacityScreen

from .builder_helpers import BuilderHost, builder, set_by_keys, type_into
from .helpers import await_until
from .tui_helpers import demo_events, drive, make_run, two_gpus, wait_text

WIDE = (160, 45)


def test_estimate_against_each_detected_gpu_with_suggestions(home):
    app = BuilderHost("llama3.1-70b-qlora-80gb", gpu_source=two_gpus())

    async def scenario(pilot):
        screen = builder(app)
        assert await await_until(pilot, lambda: screen.estimate.detected and screen.estimate.result
                              and len(screen.estimate.result.gpus) == 2)
        fc = screen.estimate.result
        verdicts = {g.card.name: g.verdict for g in fc.gpus}
        assert verdicts == {"NVIDIA H100 80GB HBM3": "fits", "NVIDIA A100-SXM4-40GB": "does not fit"}
        text = await wait_text(pilot, "detected: NVIDIA H100 80GB HBM3", "does not fit", "to fit NVIDIA A100-SXM4-40GB")
        for label in ("weights", "adapters + their grads", "optimizer state", "activations", "logits",
                      "CUDA overhead", "total"):
            assert label in text
    drive(app, WIDE, scenario)


def test_no_gpu_pick_a_common_card_and_follow_the_suggestions(home):
    app = BuilderHost("llama3.1-8b-qlora-24gb")

    async def scenario(pilot):
        screen = builder(app)
        await wait_text(pilot, "no NVIDIA GPU detected", "RTX 4090 24 GB", "fits")
        # Pick the 16 GB card with keys, then make the run too big for it.
        pick = screen.query_one("#gpu-pick")
        pick.focus()
        await pilot.pause()
        await set_by_keys(pilot, pick, "RTX 4060 Ti 16 GB")
        await type_into(pilot, "training", "max_seq_len", "1024")
        await type_into(pilot, "training", "gradient_checkpointing", False)
        assert await await_until(pilot, lambda: screen.estimate.result.gpus[0].verdict == "does not fit")
        fc = screen.estimate.result
        assert fc.gpus[0].card.name == "RTX 4060 Ti 16 GB"
        texts = [s.text for s in fc.suggestions]
        assert any(t.startswith("micro-batch 4 -> ") and "effective batch 16 kept" in t for t in texts), texts
        assert any("gradient checkpointing" in t for t in texts), texts
        assert any(t.startswith("sequence length 1024 -> ") for t in texts), texts
        await wait_text(pilot, "to fit RTX 4060 Ti 16 GB, keeping the effective batch")
    drive(app, WIDE, scenario)


@pytest.mark.slow
def test_preview_renders_the_example_as_the_model_sees_it(home):
    app = BuilderHost("demo", preview_tokens=True)

    async def scenario(pilot):
        text = await wait_text(pilot, "messages format (detected)", "tokens ", "p50", "p99",
                               "0 rows would be truncated", "<|im_start|>assistant", timeout=120)
        assert "(max_seq_len 256)" in text
        tok = builder(app).preview.tok
        assert tok["ok"] and tok["example"]["spans"], tok
        start, end = tok["example"]["spans"][0]
        assert tok["example"]["text"][start:end].endswith("<|im_end|>")   # the end marker; not the newline after it
    drive(app, WIDE, scenario)


def test_preview_subprocess_is_killed_when_cancelled(home):
    from engine.profile import load_named
    calls = iter([False, False, True])
    result = preview_panel.run_preview(load_named("demo"), cancelled=lambda: next(calls, True), timeout=60)
    assert result.get("cancelled"), result


def test_help_and_what_can_i_train_here(home):
    app = BuilderHost("demo")

    async def scenario(pilot):
        await wait_text(pilot, "demo")
        await pilot.press("f1")
        text = await wait_text(pilot, "Saving keeps your comments")
        assert isinstance(app.screen, BuilderHelp) and "ctrl+n" in text
        await pilot.press("escape")
        await pilot.press("ctrl+g")
        text = await wait_text(pilot, "largest common model per method at seq 256", "qlora", "lora", "full")
        assert isinstance(app.screen, CapacityScreen) and "RTX 4090 24 GB" in text
        await pilot.press("escape")
        assert isinstance(app.screen, RunBuilderScreen)
    drive(app, WIDE, scenario)


def test_dashboard_n_opens_the_builder_and_focuses_the_launched_run(home, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    make_run(root, "20250101-000000-demo", demo_events(steps=40))
    monkeypatch.setattr(preview_panel, "run_preview", lambda *a, **k: {"ok": False, "error": "not in this test"})
    launched = []

    def fake_launch(profile, root=None):
        # The wiring, not the engine (test_builder_pilot starts a real one): a run folder, no process.
        run_dir = rundir.create(profile, root)
        launched.append(run_dir)
        return run_dir

    monkeypatch.setattr(screen_module.launch, "launch", fake_launch)
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=root)

    async def scenario(pilot):
        await wait_text(pilot, "20250101-000000-demo")
        await pilot.press("n")
        assert await await_until(pilot, lambda: isinstance(app.screen, RunBuilderScreen))
        await wait_text(pilot, "run builder · demo")
        await pilot.press("ctrl+r")
        await wait_text(pilot, "Launch a detached run of demo?")
        await pilot.press("y")
        assert await await_until(pilot, lambda: not isinstance(app.screen, RunBuilderScreen))
        assert launched and launched[0].parent == root
        assert await await_until(pilot, lambda: app.focus_run == launched[0].name)
    drive(app, (120, 40), scenario)
