"""The profile form, generated from the schema (engine/profile/schema.py): one row per dataclass field,
grouped by section, with the field's hint under it and the validator's message beside it.

Nothing here lists fields: a field added to the schema appears in the form with its hint, its editor
(by `kind`: a checkbox for bool, a list for choices, a text input otherwise) and its validation
(engine.profile.check_field, the validator the engine uses). Fields whose `methods` metadata excludes
the chosen method are hidden, and are not written (as Profile.to_dict leaves them out).

Keys: tab / shift+tab and up / down move between fields; enter in a text field moves to the next one;
space or enter toggles a checkbox and opens a list (up / down and enter choose in it).
"""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static

from engine.profile import Profile, check_field
from engine.profile.schema import SECTIONS, section_fields

from ..components.ordered_input import KeysInOrder, OrderedInput
from .fieldtext import from_text, to_text

# The top-level `description` is not a dataclass field with metadata; this is its form entry.
TOP = "profile"
_DESCRIPTION_META = {"hint": "One line shown next to the profile's name in lists", "kind": "str", "choices": (),
                     "min": None, "max": None, "path": False, "methods": ()}
TITLES = {TOP: "profile", "model": "model", "data": "data", "method": "method and LoRA", "training": "training",
          "output": "output"}


def fields_of(section: str) -> list[tuple[str, dict]]:
    """(key, metadata) of every field of a form section, in schema order."""
    if section == TOP:
        return [("description", _DESCRIPTION_META)]
    return [(f.name, f.metadata) for f in section_fields(section)]


def editor_id(section: str, key: str) -> str:
    return f"f-{section}-{key}"


class ChoiceField(KeysInOrder, Select, inherit_bindings=False):
    """A Select whose up / down keys move between fields (the stock one opens its list on them)."""
    BINDINGS = [Binding("enter,space", "show_overlay", "Open list", show=False)]


class FieldInput(OrderedInput):
    """A text field: keys apply in typing order (see OrderedInput); enter moves to the next field, at once,
    so the keys typed after it land there."""
    BINDINGS = [Binding("enter", "app.focus_next", "Next field", show=False)]
    _typing = False

    # Input records its text's width as its virtual size through a layout reactive, so every keystroke
    # re-arranged the whole screen: 460 widgets in the builder, 84 full layouts for 65 keys, 50-60 ms of CPU
    # a key on 2 cores. A field's box never changes with its text (height 1, width 1fr: builder.tcss), so
    # the new width only moves the scroll range, which the stored virtual size already gives.
    def _watch_value(self, value: str) -> None:
        self._typing = True
        try:
            super()._watch_value(value)
        finally:
            self._typing = False

    def refresh(self, *regions, repaint: bool = True, layout: bool = False, recompose: bool = False):
        if self._typing and not self.styles.auto_dimensions:
            layout = False      # the virtual size set by a value change (above): a repaint is enough
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class BoolField(KeysInOrder, Checkbox):
    """A checkbox that says true / false next to its box, as the TOML will."""

    def watch_value(self) -> None:
        super().watch_value()
        self.label = "true" if self.value else "false"


class FieldRow(Vertical):
    def __init__(self, section: str, key: str, meta: dict):
        super().__init__(id=f"row-{section}-{key}", classes="field-row")
        self.section, self.key, self.meta = section, key, meta

    def compose(self) -> ComposeResult:
        kind, eid = self.meta["kind"], editor_id(self.section, self.key)
        if kind == "bool":
            self.editor = BoolField("false", False, id=eid, compact=True, classes="field-editor")
        elif kind == "choice":
            self.editor = ChoiceField([(c, c) for c in self.meta["choices"]], allow_blank=False, id=eid,
                                      compact=True, classes="field-editor")
        else:
            self.editor = FieldInput(id=eid, compact=True, classes="field-editor", select_on_focus=False)
        self.message = Static("", classes="field-error", markup=False)
        with Horizontal(classes="field-line"):
            yield Label(self.key, classes="field-key")
            yield self.editor
        yield Static(self.meta["hint"], classes="field-hint", markup=False)
        yield self.message

    def get(self):
        ed = self.editor
        if isinstance(ed, Input):
            return from_text(ed.value, self.meta["kind"])
        return ed.value

    def raw(self):
        """The editor's value as shown (text for an input)."""
        return self.editor.value

    def set(self, value) -> None:
        ed = self.editor
        if isinstance(ed, Input):
            ed.value = to_text(value, self.meta["kind"])
            ed.cursor_position = len(ed.value)
        else:
            ed.value = value

    def show(self, error: str | None, warning: str | None = None) -> None:
        text = error or warning or ""
        state = (text, bool(error))
        if getattr(self, "_shown", None) == state:
            return              # every keystroke lands here: repaint (and re-layout) only on a change
        self._shown = state
        line = self.message
        line.update(text)
        line.set_class(bool(error), "-error")
        line.set_class(not error and bool(warning), "-warning")
        line.display = bool(text)
        self.set_class(bool(error), "-invalid")


class ProfileForm(VerticalScroll, can_focus=False):
    """Every profile field. `values()` gives the TOML-ready mapping; `errors` what the validator refused."""

    BINDINGS = [Binding("up", "move(-1)", "Previous field", show=False),
                Binding("down", "move(1)", "Next field", show=False)]

    class Changed(Message):
        """A field was edited (valid or not)."""
        def __init__(self, section: str, key: str):
            super().__init__()
            self.section, self.key = section, key

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: dict[tuple[str, str], FieldRow] = {}
        self.errors: dict[tuple[str, str], str] = {}
        self.problems: dict[tuple[str, str], str] = {}   # whole-profile rules, shown until fixed
        self.method = "qlora"
        self._last: dict[tuple[str, str], object] = {}   # each editor's value as last seen (load or edit)

    def compose(self) -> ComposeResult:
        for section in (TOP, *SECTIONS):
            yield Static(TITLES.get(section, section), classes="section-title")
            for key, meta in fields_of(section):
                row = FieldRow(section, key, meta)
                self.rows[(section, key)] = row
                yield row

    # -- values --------------------------------------------------------------------------------------------

    def load(self, profile: Profile) -> None:
        """Show a profile's values (every field, the hidden ones too, so switching method keeps them)."""
        self.errors.clear()
        self.problems.clear()
        for (section, key), row in self.rows.items():
            value = profile.description if section == TOP else getattr(getattr(profile, section), key)
            row.set(value)
            row.show(None)
            self._last[(section, key)] = row.raw()
        self.apply_method(profile.method.type)

    def values(self) -> dict:
        """{"description": ..., section: {key: value}} for the fields that apply; refused values left out."""
        out: dict = {section: {} for section in SECTIONS}
        for (section, key), row in self.rows.items():
            if (section, key) in self.errors or not row.display:
                continue
            value = row.get()
            if section == TOP:
                out[key] = value
            else:
                out[section][key] = value
        return out

    def snapshot(self) -> dict:
        """What the editors hold, as typed (for noticing unsaved edits)."""
        return {k: r.raw() for k, r in self.rows.items()}

    # -- validation ----------------------------------------------------------------------------------------

    def check(self, section: str, key: str) -> None:
        row = self.rows[(section, key)]
        value = row.get()
        error = None if section == TOP else check_field(section, key, value)
        if error:
            # "section.key: message\n  hint: ..." -> the message, plus the hint unless it is the one shown below.
            message, _, hint = error.replace(f"{section}.{key}: ", "", 1).partition("\n  hint: ")
            error = f"{message} — {hint}" if hint and hint != row.meta["hint"] else message
            self.errors[(section, key)] = error
        else:
            self.errors.pop((section, key), None)
        self.problems.pop((section, key), None)
        row.show(error, None if error else _path_warning(row.meta, value))

    def set_problems(self, problems: dict[tuple[str, str], str]) -> None:
        """Whole-profile problems from validate(), shown beside their field unless it has its own error."""
        self.problems = problems
        for k, row in self.rows.items():
            if k not in self.errors:
                row.show(problems.get(k), None if k in problems else _path_warning(row.meta, row.get()))

    def apply_method(self, method: str) -> None:
        self.method = method
        for (section, key), row in self.rows.items():
            methods = row.meta.get("methods") or ()
            row.display = not methods or method in methods

    def focus_field(self, section: str, key: str) -> None:
        row = self.rows.get((section, key))
        if row is not None:
            row.editor.focus()

    # -- events --------------------------------------------------------------------------------------------

    def _edited(self, widget) -> None:
        row = next((r for r in self.rows.values() if r.editor is widget), None)
        if row is None:
            return
        key = (row.section, row.key)
        self.check(*key)
        if key == ("method", "type"):
            self.apply_method(row.get())
        # Setting values in load() posts Changed events later; only a real edit is news to the screen.
        if row.raw() != self._last.get(key):
            self._last[key] = row.raw()
            self.post_message(self.Changed(*key))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._edited(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._edited(event.select)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._edited(event.checkbox)

    def action_move(self, step: int) -> None:
        if step > 0:
            self.screen.focus_next()
        else:
            self.screen.focus_previous()


def _path_warning(meta: dict, value) -> str | None:
    """A path field naming a local file that is not there. Only a warning: a hub id is fine too."""
    if not meta.get("path") or not value:
        return None
    for ref in (value if isinstance(value, list) else [value]):
        if not isinstance(ref, str):
            continue
        p = Path(ref).expanduser()
        if (p.is_absolute() or ref.startswith((".", "~"))) and not p.exists():
            return f"{ref}: no such file or folder"
    return None
