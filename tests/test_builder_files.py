"""The run builder's file work, without a screen: text <-> values, saving with comments kept, opening a
profile with problems, noticing a file changed on disk."""
from __future__ import annotations

import subprocess
import sys

import pytest

from engine.profile import load
from engine.profile.schema import SECTIONS, section_fields
from tuiapp.builder import session
from tuiapp.builder.fieldtext import from_text, to_text
from tuiapp.builder.toml_update import has_comments, render_value, update_text

from .helpers import DATA, ROOT, TINY_MODEL
from .tui_helpers import HEAVY


@pytest.mark.parametrize("value,kind", [(8, "int"), ("auto", "int_or_auto"), (4, "int_or_auto"), (3e-3, "float"),
                                        (1e-10, "float"), ("all-linear", "str_or_list"),
                                        (["q_proj"], "str_or_list"), (["a b", 'say "hi"'], "str_or_list"),
                                        ("/models/x", "str")])
def test_field_text_round_trips(value, kind):
    assert from_text(to_text(value, kind), kind) == value


def test_field_text_keeps_bad_input_for_the_validator_to_name():
    assert from_text("abc", "int") == "abc" and from_text("1.5", "int") == "1.5"
    assert from_text("nan", "float") == "nan" and from_text("inf", "float") == "inf"
    assert from_text("[1, 2", "str_or_list") is None


SOURCE = """\
# header comment
description = "mine"  # inline

[model]
name_or_path = "/m"

[method]
type = "lora"
lora_r = 8  # rank
lora_alpha = 16

[training]
learning_rate = 3e-3
max_steps = 10
"""


def _defaults():
    out = {"name": "p", "description": ""}
    for s in SECTIONS:
        probe = SECTIONS[s]()
        out[s] = {f.name: getattr(probe, f.name) for f in section_fields(s)}
    return out


def test_update_keeps_comments_edits_in_place_adds_and_removes():
    desired = {"description": "mine", "model": {"name_or_path": "/m"}, "data": {"path": "/d.jsonl"},
               "method": {"type": "full"},                       # lora_r / lora_alpha no longer apply
               "training": {"learning_rate": 0.003, "max_steps": 20, "packing": True}}
    text = update_text(SOURCE, desired, _defaults())
    assert text.startswith("# header comment\ndescription = \"mine\"  # inline\n")
    assert "learning_rate = 3e-3\n" in text                      # equal value: the line is untouched
    assert "max_steps = 20\npacking = true\n" in text            # changed in place; new key after it
    assert "lora_r" not in text and "lora_alpha" not in text
    assert '[data]\npath = "/d.jsonl"\n' in text                 # a new table at the end


def test_update_gives_up_on_what_it_cannot_edit_safely():
    multi = SOURCE + 'target = [\n  "a",\n]\n'
    assert update_text(multi, {"training": {}}, _defaults()) is None
    assert update_text('model.name_or_path = "x"\n', {"model": {}}, _defaults()) is None
    assert render_value(["a", "b"]) == '["a", "b"]'


def test_has_comments():
    assert has_comments(SOURCE)
    assert not has_comments('[model]\nname_or_path = "a # not a comment"\n')


def _user(home, name, text):
    folder = home.parent / "config" / "tunetop" / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(text)
    return folder / f"{name}.toml"


def test_open_lists_what_it_cannot_keep_and_save_round_trips(home):
    text = (f'# keep me\n[model]\nname_or_path = "{TINY_MODEL}"\n[data]\npath = "{DATA / "messages.jsonl"}"\n'
            '[method]\ntype = "full"\nlora_r = 8\n[training]\nmax_steps = "ten"\ncolour = 1\n[extras]\nx = 1\n')
    path = _user(home, "p", text)
    opened = session.open_profile(path)
    joined = "\n".join(opened.not_kept)
    for needle in ("training.max_steps", "training.colour = 1: unknown key", "extras", 'method.lora_r: does not apply'):
        assert needle in joined, joined
    profile = opened.profile
    profile.training.max_steps = 5
    report = session.save(opened, profile, path)
    saved = path.read_text()
    assert report.comments_kept and saved.startswith("# keep me")
    assert "colour" not in saved and "extras" not in saved and "lora_r" not in saved
    assert load(path).to_dict() == profile.to_dict()
    assert {"training.colour", "extras.x", "method.lora_r", "training.max_steps"} - set(report.removed) \
        == {"training.max_steps"}


def test_fresh_write_when_in_place_is_impossible_says_comments_were_dropped(home):
    text = (f'# a comment\n[model]\nname_or_path = "{TINY_MODEL}"\n[data]\npath = [\n  "{DATA / "messages.jsonl"}",\n]\n')
    path = _user(home, "multi", text)
    opened = session.open_profile(path)
    report = session.save(opened, opened.profile, path)
    assert not report.comments_kept and report.comments_dropped
    assert load(path).to_dict() == opened.profile.to_dict()


def test_changed_on_disk(home):
    path = _user(home, "c", f'[model]\nname_or_path = "{TINY_MODEL}"\n')
    opened = session.open_profile(path)
    assert session.changed_on_disk(opened) is None
    path.write_text(path.read_text() + "# touched\n")
    assert session.changed_on_disk(opened) == "changed"
    path.unlink()
    assert session.changed_on_disk(opened) == "deleted"


def test_every_bundled_profile_saved_from_the_form_loads_back_identical(home, tmp_path):
    for bundled in sorted((ROOT / "profiles").glob("*.toml")):
        opened = session.open_profile(bundled)
        assert not opened.not_kept, (bundled, opened.not_kept)
        target = tmp_path / bundled.name
        session.save(opened, opened.profile, target)
        assert load(target).to_dict() == load(bundled).to_dict(), bundled.name
        assert has_comments(target.read_text()) == has_comments(bundled.read_text())


def test_valid_names():
    assert session.valid_name("my-run_2.b") is None
    assert session.valid_name("") and session.valid_name("a/b") and session.valid_name(".hidden")


def test_builder_imports_nothing_heavy():
    code = ("import sys, tuiapp.builder, tuiapp.plan_cli, engine.plan; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
