"""The run builder with bad input: each problem is shown where it happens, nothing is written or launched by
mistake, and nothing the user wrote is lost silently. Pilot tests, keys only for what the user does."""
from __future__ import annotations

import pytest

from engine import paths
from engine.profile import load
from engine.profile.schema import Profile
from tuiapp.builder import RunBuilderScreen
from tuiapp.builder.dialogs import ChoiceScreen, NameScreen
from tuiapp.components.confirm import ConfirmScreen

from .builder_helpers import BuilderHost, builder, editor, type_into
from .helpers import await_until, DATA, TINY_MODEL, toml_text
from .tui_helpers import drive, screen_text, wait_text

SIZE = (160, 45)


def user_profile(home, name: str, text: str):
    folder = home.parent / "config" / "tunetop" / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def demo_text(**training) -> str:
    return ("# my notes about this run\n"
            'description = "mine"  # shown in lists\n\n'
            f'[model]\nname_or_path = "{TINY_MODEL}"\n\n'
            f'[data]\npath = "{DATA / "messages.jsonl"}"\n\n'
            '[method]\ntype = "lora"\nlora_r = 8  # small on purpose\n\n'
            "[training]\nmax_steps = 10\nmicro_batch = 4\n"
            + "".join(f"{k} = {v}\n" for k, v in training.items()))


def test_non_numeric_and_out_of_range_values_show_beside_the_field_and_block_saving(home):
    app = BuilderHost("demo")

    async def scenario(pilot):
        await wait_text(pilot, "demo")
        screen = builder(app)
        await type_into(pilot, "training", "micro_batch", "abc")
        assert 'expected a whole number or "auto"' in screen.form.errors[("training", "micro_batch")]
        await wait_text(pilot, 'expected a whole number or "auto"')
        await pilot.press("backspace", "backspace", "backspace", "0")
        assert "from 1 to 4096" in screen.form.errors[("training", "micro_batch")]
        await pilot.press("backspace", "8")
        assert ("training", "micro_batch") not in screen.form.errors
        await type_into(pilot, "training", "learning_rate", "2")
        assert "from 0 to 1" in screen.form.errors[("training", "learning_rate")]
        await type_into(pilot, "method", "target_modules", "[1, 2]")
        assert "list of strings" in screen.form.errors[("method", "target_modules")]
        # Saving refuses and puts the cursor on the first bad field.
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, (NameScreen, ConfirmScreen))
        assert app.focused is editor(app, "method", "target_modules")
    drive(app, SIZE, scenario)
    assert not (home.parent / "config" / "tunetop" / "profiles").exists()


def test_model_path_that_does_not_exist_blocks_launch_but_not_editing(home, tmp_path):
    missing = tmp_path / "no-such-model"
    path = user_profile(home, "nomodel", demo_text().replace(str(TINY_MODEL), str(missing)))
    app = BuilderHost(path, runs_root=tmp_path / "runs")

    async def scenario(pilot):
        # The estimate says why, and model.name_or_path carries a warning.
        await wait_text(pilot, "estimate unavailable", "does not exist", "no such file or folder")
        await pilot.press("ctrl+r")
        await pilot.pause(0.5)
        assert isinstance(app.screen, RunBuilderScreen), "a doomed launch was offered"
        assert app.focused is editor(app, "model", "name_or_path")
    drive(app, SIZE, scenario)
    assert not (tmp_path / "runs").exists()


def test_model_id_in_neither_cache_nor_table_says_why_and_launch_is_still_allowed(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    path = user_profile(home, "hubid", demo_text().replace(str(TINY_MODEL), "someorg/unheard-of-7b"))
    app = BuilderHost(path, runs_root=tmp_path / "runs")

    async def scenario(pilot):
        screen = builder(app)
        await wait_text(pilot, "estimate unavailable", "launching is still allowed")
        assert "not in the Hugging Face cache" in screen.estimate.result.problem
        await pilot.press("ctrl+r")
        await wait_text(pilot, "Launch a detached run of hubid?", "estimate unavailable")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")                             # allowed, but not wanted here (no network)
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunBuilderScreen)
    drive(app, SIZE, scenario)
    assert not (tmp_path / "runs").exists()


def test_unreadable_dataset_rows_are_shown_with_their_row(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    bad.write_text(good + "{not json\n" + '{"messages": "oops"}\n' + good)
    # Half the rows are bad: allow that here (data.max_bad_fraction) so the preview shows them row by row.
    text = demo_text().replace(str(DATA / "messages.jsonl"), str(bad)).replace("[data]", "[data]\nmax_bad_fraction = 0.6")
    path = user_profile(home, "baddata", text)
    app = BuilderHost(path)

    async def scenario(pilot):
        await wait_text(pilot, "messages format", "2 bad", "bad.jsonl:2", "not valid JSON", "bad.jsonl:3")
    drive(app, SIZE, scenario)

    unusable = tmp_path / "none.jsonl"
    unusable.write_text('{"messages": "oops"}\n{broken\n')
    path = user_profile(home, "nodata", demo_text().replace(str(DATA / "messages.jsonl"), str(unusable)))
    app = BuilderHost(path)

    async def scenario2(pilot):
        await wait_text(pilot, "the dataset cannot be used", "none.jsonl:1", "none.jsonl:2")
    drive(app, SIZE, scenario2)


def test_saving_over_a_bundled_profile_asks_for_a_new_name(home):
    app = BuilderHost("demo")

    async def scenario(pilot):
        await wait_text(pilot, "demo")
        await type_into(pilot, "method", "lora_r", "4")
        await pilot.press("ctrl+s")
        await wait_text(pilot, "demo is a bundled profile (read-only)", "Save your version as")
        assert isinstance(app.screen, NameScreen)
        await pilot.press("ctrl+u", *"demo-mine", "enter")
        await wait_text(pilot, "demo-mine.toml?")
        await pilot.press("y")
        saved = home.parent / "config" / "tunetop" / "profiles" / "demo-mine.toml"
        assert await await_until(pilot, saved.exists)
        assert load(saved).method.lora_r == 4
    drive(app, SIZE, scenario)
    assert "lora_r = 8" in (paths.BUNDLED_PROFILES / "demo.toml").read_text(), "the bundled file was touched"


@pytest.mark.parametrize("answer", ["overwrite", "reload"])
def test_a_file_changed_on_disk_since_it_was_opened(home, answer):
    path = user_profile(home, "mine", demo_text())
    app = BuilderHost(path)

    async def scenario(pilot):
        await wait_text(pilot, "mine")
        screen = builder(app)
        await type_into(pilot, "training", "max_steps", "12")
        path.write_text(path.read_text().replace("max_steps = 10", "max_steps = 99"))   # another editor
        await pilot.press("ctrl+s")
        await wait_text(pilot, "changed on disk since you opened it")
        assert isinstance(app.screen, ChoiceScreen)
        if answer == "overwrite":
            await pilot.press("o")
            await wait_text(pilot, "Overwrite")
            await pilot.press("y")
            assert await await_until(pilot, lambda: "max_steps = 12" in path.read_text())
        else:
            await pilot.press("r")
            assert await await_until(pilot, lambda: editor(app, "training", "max_steps").value == "99")
            assert not screen.dirty
    drive(app, SIZE, scenario)


def test_comments_are_kept_and_unknown_keys_are_reported_not_lost_silently(home):
    path = user_profile(home, "notes", demo_text(colour='"blue"', learning_rate='"fast"'))
    app = BuilderHost(path)

    async def scenario(pilot):
        text = await wait_text(pilot, "not in the form", "training.colour", "training.learning_rate")
        assert "unknown key" in text
        screen = builder(app)
        await type_into(pilot, "method", "lora_r", "16")
        await pilot.press("ctrl+s")
        text = await wait_text(pilot, "Comments and layout are kept", "Not kept from the original file")
        assert "training.colour" in text
        await pilot.press("y")
        assert await await_until(pilot, lambda: not screen.dirty)
        saved = path.read_text()
        assert "# my notes about this run" in saved and "# shown in lists" in saved
        assert "lora_r = 16  # small on purpose" in saved
        assert "colour" not in saved and "fast" not in saved
        assert load(path).to_dict() == screen.strict_profile().to_dict()
    drive(app, SIZE, scenario)


def test_method_switch_shows_and_hides_fields_and_the_file_drops_them(home):
    app = BuilderHost("demo")

    async def scenario(pilot):
        await wait_text(pilot, "demo")
        screen = builder(app)
        rows = screen.form.rows
        assert not rows[("method", "quant_type")].display and rows[("method", "lora_r")].display
        await type_into(pilot, "method", "type", "qlora")
        reached = set()
        for _ in range(10):                               # the QLoRA fields now follow in the tab order
            await pilot.press("tab")
            reached.add(app.focused.id)
        assert {"f-method-quant_type", "f-method-double_quant", "f-method-compute_dtype"} <= reached
        await type_into(pilot, "method", "quant_type", "fp4")
        await type_into(pilot, "method", "type", "full")
        assert not rows[("method", "lora_r")].display and not rows[("method", "quant_type")].display
        await pilot.press("ctrl+n")
        await pilot.press("ctrl+u", *"full-demo", "enter")
        text = await wait_text(pilot, "full-demo.toml?", "Left out")
        assert "method.lora_r" in text
        await pilot.press("y")
        saved = home.parent / "config" / "tunetop" / "profiles" / "full-demo.toml"
        assert await await_until(pilot, saved.exists)
        assert load(saved).to_dict()["method"] == {"type": "full"}
        assert "lora_" not in saved.read_text() and "quant_type" not in saved.read_text()
    drive(app, SIZE, scenario)


def test_blank_profile_needs_a_model_and_data(home):
    app = BuilderHost(None)

    async def scenario(pilot):
        text = await wait_text(pilot, "untitled", "is required", "no dataset yet")
        assert "estimate unavailable: no model set" in text
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert app.focused is editor(app, "model", "name_or_path")
    drive(app, SIZE, scenario)


def test_blank_profile_saved_loads_back_identical(home, tmp_path):
    app = BuilderHost(None)
    defaults = Profile().to_dict()

    async def scenario(pilot):
        await wait_text(pilot, "untitled")
        screen = builder(app)
        for section, key, value in (("model", "name_or_path", str(TINY_MODEL)),
                                    ("data", "path", str(DATA / "alpaca.json"))):
            editor(app, section, key).value = value    # long paths: typing is tested elsewhere
        await pilot.pause(0.3)
        await pilot.press("ctrl+s")
        await wait_text(pilot, "has not been saved yet")
        await pilot.press(*"fresh", "enter")
        await pilot.press("y")
        saved = home.parent / "config" / "tunetop" / "profiles" / "fresh.toml"
        assert await await_until(pilot, saved.exists)
        back = load(saved).to_dict()
        assert back == screen.strict_profile().to_dict()
        assert back["training"] == defaults["training"] and back["name"] == "fresh"
    drive(app, SIZE, scenario)


def test_escape_with_unsaved_edits_asks_first(home):
    app = BuilderHost("demo")

    async def scenario(pilot):
        await wait_text(pilot, "demo")
        await type_into(pilot, "training", "max_steps", "41")
        await pilot.press("escape")
        await wait_text(pilot, "unsaved edits are lost")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunBuilderScreen)
        await pilot.press("escape")
        await pilot.press("y")
        assert await await_until(pilot, lambda: app.result is None)
    drive(app, SIZE, scenario)


def test_pick_another_profile_from_the_list_with_keys(home):
    user_profile(home, "zzz-mine", toml_text({"model": {"name_or_path": str(TINY_MODEL)},
                                               "data": {"path": str(DATA / "messages.jsonl")},
                                               "training": {"max_steps": 77}}))
    app = BuilderHost("demo")

    async def scenario(pilot):
        await wait_text(pilot, "demo")
        await pilot.press("ctrl+o")
        await pilot.pause(0.2)
        await pilot.press("end", "enter")                  # the last entry: the user's profile
        assert await await_until(pilot, lambda: editor(app, "training", "max_steps").value == "77")
        assert screen_text(app).count("zzz-mine") >= 1
    drive(app, SIZE, scenario)
