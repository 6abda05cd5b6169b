"""The builder's rough edges a new user met (issue 11): q with unsaved edits, the footer, the estimate with a
refused micro-batch, what the launch dialog says this machine will run."""
from __future__ import annotations

from engine.telemetry import ScriptedSource
from tuiapp.app import TunetopApp
from tuiapp.builder import RunBuilderScreen
from tuiapp.components.confirm import ConfirmScreen

from .builder_helpers import BuilderHost, builder, editor, type_into
from .helpers import await_until
from .tui_helpers import drive, screen_text, wait_text


def footer_line(app) -> str:
    return screen_text(app).splitlines()[-1]


def test_q_in_the_builder_goes_back_asking_first_and_the_footer_has_only_builder_keys(home, tmp_path):
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=tmp_path / "runs")

    async def scenario(pilot):
        await wait_text(pilot, "runs (0)")
        await pilot.press("n")
        assert await await_until(pilot, lambda: isinstance(app.screen, RunBuilderScreen), 20)
        await wait_text(pilot, "run builder")
        footer = footer_line(app)
        for key in ("Save", "Launch", "Help", "Back"):
            assert key in footer, footer
        for key in ("Stop", "Resume", "Logs", "Delete", "Quit"):
            assert key not in footer, footer       # the dashboard's keys do nothing here

        # Nothing edited: q goes back to the dashboard (it used to quit the whole app).
        await pilot.press("q")
        assert await await_until(pilot, lambda: not isinstance(app.screen, RunBuilderScreen), 5)
        assert app.is_running and "Stop" in footer_line(app)

        await pilot.press("n")
        assert await await_until(pilot, lambda: isinstance(app.screen, RunBuilderScreen), 20)
        await type_into(pilot, "training", "max_steps", "41q")     # q in a text field is a letter
        assert editor(app, "training", "max_steps").value == "41q"
        editor(app, "model", "trust_remote_code").focus()
        await pilot.pause()
        await pilot.press("q")
        await wait_text(pilot, "unsaved edits are lost")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunBuilderScreen) and app.is_running
        await pilot.press("q")
        await wait_text(pilot, "unsaved edits are lost")
        await pilot.press("y")
        assert await await_until(pilot, lambda: not isinstance(app.screen, (RunBuilderScreen, ConfirmScreen)), 5)
        assert app.is_running
    drive(app, (80, 24), scenario)


def test_estimate_waits_for_a_valid_micro_batch_and_launch_says_what_this_machine_runs(home):
    app = BuilderHost(gpu_source=ScriptedSource.no_gpu())

    async def scenario(pilot):
        # No GPU here, a card picked in the list: the panel says which card it estimates for.
        text = await wait_text(pilot, "fits", "micro-batch 8 × accumulation", "no NVIDIA GPU detected")
        assert "estimating for RTX" in text
        assert "pick a card above" not in text
        await type_into(pilot, "training", "micro_batch", "0")
        await wait_text(pilot, "the estimate waits for training.micro_batch")
        assert "micro-batch 8 × accumulation" not in screen_text(app)   # no figure for a value nobody typed
        await type_into(pilot, "training", "micro_batch", "2")
        await wait_text(pilot, "micro-batch 2 × accumulation")

        await pilot.press("ctrl+r")
        assert await await_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20)
        text = await wait_text(pilot, "this machine: no NVIDIA GPU, so the CPU in fp32")
        assert "not this machine" in text               # the card's verdict is for planning only
        assert app.focused.id == "yes"                  # launching is harmless: enter launches
        await pilot.press("n")
        assert await await_until(pilot, lambda: builder(app) is app.screen, 5)
    drive(app, (120, 40), scenario)


def test_table_fields_read_and_write_toml_inline_tables():
    # data.columns is a table: the form shows it as the file spells it and reads back what is typed.
    from tuiapp.builder.fieldtext import from_text, to_text
    for value in ({}, {"prompt": "question", "completion": "answer"}):
        assert from_text(to_text(value, "table"), "table") == value
    assert from_text("", "table") == {}
    assert from_text("{ prompt = ", "table") == "{ prompt ="    # left for the validator to name
