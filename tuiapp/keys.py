"""Every key of the dashboard and the run builder, in one place.

The Binding objects here are the screens' BINDINGS (so they drive the keys and the footer), and their tooltip is
the line the help screens show; keys that Textual itself binds (the table's arrows, tab, the palette) are listed
beside them as plain (keys, text) pairs. README's key tables are these rows (tests/test_tui_keys.py compares).
"""
from __future__ import annotations

from textual.binding import Binding

# -- the dashboard -------------------------------------------------------------------------------------------

# Footer order is this order: at 80 columns the first ones are what fits.
DASHBOARD = [
    Binding("n", "new_run", "New", tooltip="new run (the run builder: a profile form with a VRAM fit check)"),
    Binding("L", "launch", "Launch", key_display="L", tooltip="launch a saved profile as it is"),
    Binding("s", "stop", "Stop", tooltip="stop the run in focus (asks first; it saves a checkpoint, then exits)"),
    Binding("r", "resume", "Resume", tooltip="resume the run in focus from its last checkpoint"),
    Binding("l", "logs", "Logs", tooltip="the run's engine log, full screen, following it live"),
    Binding("d", "delete", "Delete", tooltip="delete a finished run's folder (asks first; refused while it runs)"),
    Binding("z", "chart_zoom", "Zoom", show=False,
            tooltip="chart: the recent steps (the last fifth) or the whole run"),
    Binding("y", "chart_log", "Log scale", show=False, tooltip="chart: log scale on or off"),
    Binding("g", "chart_metric", "Chart", show=False,
            tooltip="chart: loss (with eval points), learning rate, grad norm, in turn"),
    Binding("x", "chart_x", "Step/tokens", show=False, tooltip="chart: x axis in steps or in tokens seen"),
    Binding("question_mark", "help", "Help", key_display="?", tooltip="help: every key"),
    Binding("q", "quit", "Quit", tooltip="quit the dashboard: runs keep training; `tunetop` reattaches"),
]

RUNS_TABLE = [Binding("enter", "select_cursor", "Focus", show=False, tooltip="focus the selected run")]

DASHBOARD_OTHER = [
    ("↑ / ↓", "move in the runs table (the run under the cursor is the one in focus)"),
    ("ctrl+p", "command palette: every action, and the theme (light / dark)"),
    ("escape", "close a screen or dialog"),
]

# -- the run builder -------------------------------------------------------------------------------------------

BUILDER = [
    Binding("ctrl+s,f2", "save", "Save", tooltip="save over the open profile (bundled ones are saved under a new "
            "name; asks if the file changed on disk)"),
    Binding("ctrl+n,f3", "save_as", "Save as", tooltip="save as a new profile in your profiles folder"),
    Binding("ctrl+r,f5", "launch", "Launch", tooltip="launch a detached run from the form; the dashboard focuses it"),
    Binding("ctrl+o", "pick", "Open", tooltip="pick another profile (bundled, yours) or a blank one"),
    Binding("ctrl+g,f4", "fit", "Fits", tooltip="what can I train here? (largest model per method for the GPU)"),
    Binding("f1,question_mark", "help", "Help", key_display="f1", tooltip="help: every key"),
    Binding("escape,q", "close", "Back", key_display="esc",
            tooltip="back to the dashboard (asks first when there are unsaved edits)"),
]

BUILDER_OTHER = [
    ("tab / shift+tab, ↑ / ↓", "move between fields (every field, no mouse needed)"),
    ("enter", "next field (text), toggle (checkbox), open the list (choices)"),
    ("space", "toggle a checkbox, open a list; ↑ / ↓ and enter pick in an open list"),
]


def keys_text(binding: Binding) -> str:
    """"ctrl+s / f2": the keys as a person types them."""
    names = [k.strip() for k in binding.key.split(",")]
    if binding.key_display and len(names) == 1:
        return binding.key_display
    return " / ".join("?" if k == "question_mark" else k for k in names)


def help_rows(bindings: list[Binding], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(keys, what they do) for a help screen: Textual's own keys first, then the bindings."""
    return list(other) + [(keys_text(b), b.tooltip) for b in bindings if b.tooltip]


def dashboard_rows(bindings: list[Binding] | None = None) -> list[tuple[str, str]]:
    """bindings: the app's (TunetopApp.BINDINGS: these plus the keys its mixins add)."""
    return help_rows(RUNS_TABLE + list(DASHBOARD if bindings is None else bindings), DASHBOARD_OTHER)


def builder_rows() -> list[tuple[str, str]]:
    return help_rows(BUILDER, BUILDER_OTHER)


def markdown_table(rows: list[tuple[str, str]]) -> str:
    """The README table of these rows (keys in backticks)."""
    def cell(keys: str) -> str:
        return ", ".join(" / ".join(f"`{k.strip()}`" for k in group.split(" / ")) for group in keys.split(", "))
    return "\n".join(["| key | action |", "| --- | --- |"] + [f"| {cell(k)} | {what} |" for k, what in rows])
