"""Keys typed faster than the builder handles them land in order, in the field they were typed into.

Textual hands bound keys (backspace, end, tab, enter) back to the App's queue before their action runs while
letters go in at once, so a burst used to come out reordered ("v1.23", End, 5 x Backspace, "xyz" -> "v1.").
Each burst here is queued in one go, with no pause between keys (tuiapp/components/ordered_input.py).
"""
from __future__ import annotations

from .builder_helpers import BuilderHost, builder, burst, editor
from .helpers import await_until
from .tui_helpers import drive

# One field of every text kind the schema has, with a start value and a burst that edits it.
END, BS = "end", "backspace"
CASES = [
    (("profile", "description"), "abc def", [END, *[BS] * 3, *"xyz"], "abc xyz"),
    (("model", "revision"), "v1.23", [END, *[BS] * 5, *"xyz"], "xyz"),
    (("data", "path"), "a.jsonl", ["home", "delete", *"bb", END, *[BS] * 5, *"csv"], "bb.csv"),
    (("training", "learning_rate"), "0.003", [END, *[BS] * 5, *"abc"], "abc"),
    (("training", "max_steps"), "120", [END, BS, BS, *"45", "left", BS, "9"], "195"),
    (("training", "micro_batch"), "auto", [END, *[BS] * 4, "8", "left", "1"], "18"),
    (("distributed", "processes"), "2", [END, BS, *"auto", "ctrl+u", "4"], "4"),
]


def test_a_burst_of_keys_edits_each_text_field_kind_in_order(home):
    app = BuilderHost()

    async def scenario(pilot):
        await await_until(pilot, lambda: builder(app).form.rows, 10)
        for field, start, keys, expect in CASES:     # one builder for all: each start costs seconds
            ed = editor(app, *field)
            ed.focus()
            await pilot.pause()
            for attempt in range(2):       # the old reordering showed in every try (10 of 10)
                ed.value, ed.cursor_position = start, len(start)
                await pilot.pause()
                burst(app, *keys)
                assert await await_until(pilot, lambda: ed.value == expect, 3, 0.05), \
                    f"try {attempt + 1}: {field} ended as {ed.value!r}, typed {keys} on {start!r}"
    drive(app, (120, 40), scenario)


def test_keys_after_tab_and_enter_go_to_the_next_field(home):
    app = BuilderHost()

    async def scenario(pilot):
        await await_until(pilot, lambda: builder(app).form.rows, 10)
        first, second = editor(app, "training", "max_steps"), editor(app, "training", "micro_batch")
        third = editor(app, "training", "grad_accum")
        first.focus()
        await pilot.pause()
        burst(app, "ctrl+u", *"12", "tab", "ctrl+u", *"3", "enter", "ctrl+u", *"5")
        assert await await_until(pilot, lambda: (first.value, second.value, third.value) == ("12", "3", "5"), 5, 0.05), \
            (first.value, second.value, third.value)
        assert app.focused is third
    drive(app, (120, 40), scenario)


def test_a_burst_into_the_save_as_name(home):
    app = BuilderHost()

    async def scenario(pilot):
        await await_until(pilot, lambda: builder(app).form.rows, 10)
        await pilot.press("ctrl+n")
        assert await await_until(pilot, lambda: getattr(app.focused, "id", None) == "name", 5)
        name = app.focused
        burst(app, END, *[BS] * 20, *"mine-1", "left", BS, "x")
        assert await await_until(pilot, lambda: name.value == "minex1", 3, 0.05), name.value
    drive(app, (120, 40), scenario)
