"""The run builder's layout picker: the detected GPUs (a scripted NVML source: an H100 80 GB and an A100 40 GB)
to train on, the strategy, and the per-GPU estimate with a verdict for that layout, at 80x24 and 120x40.
Picks land in the form's [distributed] fields (what is saved and launched); typed fields show in the picker."""
from __future__ import annotations

import pytest

from engine.distributed.layout_estimate import layout_estimate
from engine.estimate.gpus import GpuCard
from engine.profile import load_named
from tuiapp.builder.layout_picker import LayoutPicker

from .builder_helpers import BuilderHost, builder, set_by_keys, type_into
from .helpers import await_until
from .tui_helpers import GIB, drive, two_gpus, wait_text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_pick_gpus_and_strategy_and_see_the_estimate_per_gpu(home, size):
    """At 80x24 the picks and the layout's verdict fit the panel; the rest is checked at 120x40 only."""
    app = BuilderHost("llama3.1-8b-qlora-24gb", gpu_source=two_gpus())

    async def scenario(pilot):
        screen = builder(app)
        panel = screen.estimate
        assert await await_until(pilot, lambda: panel.detected and panel.result is not None)
        assert panel.placed is None          # nothing distributed asked for: the usual per-card figures
        picker = screen.query_one(LayoutPicker)
        screen.query_one("#layout-gpu-0").focus()
        await pilot.pause()
        await pilot.press("space", "tab", "space")      # both GPUs, with keys
        form = screen.form.rows
        assert await await_until(pilot, lambda: form[("distributed", "gpus")].get() == "0,1")
        assert form[("distributed", "processes")].get() == "auto"
        assert await await_until(pilot, lambda: panel.placed is not None and panel.placed.layout is not None)
        ddp = panel.placed
        # strategy = "auto": the 8B QLoRA fits one GPU, so data parallel, and it says why.
        assert ddp.layout.strategy == "ddp" and ddp.layout.world_size == 2 and "fits one GPU" in ddp.layout.reason
        assert [c.name for c in ddp.cards] == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"]
        assert ddp.verdicts == ("fits", "fits") and ddp.figures[0] > panel.result.estimate.total  # + DDP buckets
        await wait_text(pilot, "fits layout ddp: world size 2", "GPU 0 11.")
        await wait_text(pilot, "GPUs", "strategy", "GPU 0 11.")
        assert screen.dirty
        if size == (80, 24):
            return

        # FSDP picked in the panel: the form's strategy follows, the per-GPU peak drops (weights sharded).
        pick = screen.query_one("#layout-strategy")
        pick.focus()
        await pilot.pause()
        await set_by_keys(pilot, pick, "fsdp")
        assert await await_until(pilot, lambda: form[("distributed", "strategy")].get() == "fsdp")
        # This profile's 8-bit optimizer cannot be sharded: the panel says so with the fix, the validator too.
        assert await await_until(pilot, lambda: panel.placed.layout is None)
        assert "training.optimizer" in panel.placed.problem and "adamw_torch" in panel.placed.hint
        await type_into(pilot, "training", "optimizer", "adamw_torch")
        assert await await_until(pilot, lambda: panel.placed.layout is not None)
        assert panel.placed.layout.strategy == "fsdp"
        assert panel.placed.figures[0] < ddp.figures[0]
        await wait_text(pilot, "layout fsdp: world size 2")

        # Typed in the form: the picker shows it (one GPU: a single process on GPU 1).
        await type_into(pilot, "distributed", "strategy", "auto")
        await type_into(pilot, "distributed", "gpus", "1")
        assert await await_until(pilot, lambda: panel.placed.layout.strategy == "single" and picker.selected() == {1})
        assert panel.placed.layout.gpus == (1,) and [c.name for c in panel.placed.cards] == ["NVIDIA A100-SXM4-40GB"]
        # A GPU that is not there is the launch's own error, shown where the figures would be.
        await type_into(pilot, "distributed", "gpus", "0,5")
        assert await await_until(pilot, lambda: panel.placed.layout is None)
        assert "GPU 5 does not exist" in panel.placed.problem
    drive(app, size, scenario)


def test_model_too_big_for_one_card_picks_fsdp_and_each_gpu_gets_a_verdict(home):
    """70B QLoRA on two 24 GB cards, planned with a picked card (no GPU here): auto picks FSDP-QLoRA."""
    p = load_named("llama3.1-70b-qlora-2x24gb")
    from engine.plan import check_profile
    card = GpuCard("RTX 4090 24 GB", 24 * GIB)
    fc = check_profile(p, [card])
    assert fc.gpus[0].verdict == "does not fit"
    le = layout_estimate(p, fc.estimate, fc.model.config, [card], detected=False, precision=fc.precision,
                         double_quant=fc.settings.double_quant)
    assert le.planned and le.layout.world_size == 2 and len(le.cards) == 2
    assert le.layout.strategy == "fsdp", le.layout.reason
    assert le.figures[0] < fc.estimate.total / 1.5 and le.verdict in ("fits", "tight")


def test_no_gpu_detected_the_picker_offers_strategy_and_plans_for_the_picked_card(home):
    app = BuilderHost("demo")

    async def scenario(pilot):
        screen = builder(app)
        await wait_text(pilot, "no NVIDIA GPU detected")
        picker = screen.query_one(LayoutPicker)
        assert not picker.boxes() and not screen.query_one("#layout-gpus").display
        assert picker.query_one("#layout-strategy").display
        await type_into(pilot, "distributed", "processes", "2")
        await wait_text(pilot, "fits layout ddp: world size 2", "GPU 1 ", "(planned for the card picked above")
        le = screen.estimate.placed
        assert le.planned and [c.name for c in le.cards] == ["RTX 4090 24 GB"] * 2
    drive(app, (120, 40), scenario)
