"""Helpers for the run builder's pilot tests: a host app, and typing into fields with keys only."""
from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.widgets import Checkbox, Input, Select

from engine.telemetry import ScriptedSource
from tuiapp.builder import RunBuilderScreen
from tuiapp.builder.form import editor_id

UNSET = object()


class BuilderHost(App):
    """An app that opens the builder at once and keeps what it dismissed with in `result`."""

    def __init__(self, profile="demo", runs_root: Path | None = None, gpu_source=None, preview_tokens=False):
        super().__init__()
        self.kw = dict(profile=profile, gpu_source=gpu_source or ScriptedSource.no_gpu(),
                       preview_tokens=preview_tokens, runs_root=runs_root)
        self.result = UNSET

    def on_mount(self) -> None:
        self.push_screen(RunBuilderScreen(**self.kw), self._done)

    def _done(self, result) -> None:
        self.result = result


def builder(app) -> RunBuilderScreen:
    screen = app.screen
    assert isinstance(screen, RunBuilderScreen), f"the builder is not on top: {screen!r}"
    return screen


def editor(app, section: str, key: str):
    return builder(app).form.rows[(section, key)].editor


async def set_by_keys(pilot, widget, value) -> None:
    """Change the focused editor to `value` with key presses only."""
    app = pilot.app
    assert app.focused is widget, f"expected focus on {widget.id}, it is on {app.focused!r}"
    if isinstance(widget, Checkbox):
        if widget.value != value:
            await pilot.press("space")
    elif isinstance(widget, Select):
        options = [v for _, v in widget._options]
        steps = options.index(value) - options.index(widget.value)
        await pilot.press("enter")
        await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps), "enter")
    else:
        assert isinstance(widget, Input)
        # Edit like a person: keep the common start, backspace over the rest, type the new end.
        current = widget.value
        keep = 0
        while keep < min(len(current), len(value)) and current[keep] == value[keep]:
            keep += 1
        erase = ["ctrl+u"] if keep == 0 and current else ["backspace"] * (len(current) - keep)
        await pilot.press("end", *erase, *list(value[keep:]))
        assert widget.value == value, (widget.id, widget.value, value)
    await pilot.pause()


async def type_into(pilot, section: str, key: str, value) -> None:
    """Put the cursor in a field and change it with keys. (Reaching every field with tab and arrows alone is
    what test_builder_pilot checks; here the focus jumps, to keep the many bad-input tests quick.)"""
    target = editor(pilot.app, section, key)
    target.focus()
    await pilot.pause()
    await set_by_keys(pilot, target, value)


def field_id(section: str, key: str) -> str:
    return editor_id(section, key)


def burst(app, *keys: str) -> None:
    """Queue key presses all at once, as a terminal delivers keys that arrive together (over SSH, a slow frame):
    unlike pilot.press, nothing waits for one key to be handled before the next is queued."""
    from textual import events
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))
