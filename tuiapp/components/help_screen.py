"""The help screen (?): every key (tuiapp/keys.py, the same bindings the footer shows), and what quitting
does to runs. Each row is two columns, so a long line wraps under its own text, not under the key."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ..keys import dashboard_rows

ROWS_CSS = """
{cls} .key-row {{ height: auto; }}
{cls} .key-row .key {{ width: {w}; color: $accent; text-style: bold; text-align: right; padding-right: 2; }}
{cls} .key-row .what {{ width: 1fr; }}
"""


def key_rows(rows: list[tuple[str, str]]) -> list[Horizontal]:
    return [Horizontal(Static(key, classes="key", markup=False), Static(what, classes="what", markup=False),
                       classes="key-row") for key, what in rows]


def key_width(rows: list[tuple[str, str]]) -> int:
    return max(len(k) for k, _ in rows) + 2


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", show=True)]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 86; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1; }
    HelpScreen .help-title { color: $primary; text-style: bold; margin-bottom: 1; }
    HelpScreen .help-note { color: $text-muted; margin-top: 1; }
    """ + ROWS_CSS.format(cls="HelpScreen", w=key_width(dashboard_rows()))

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "help"
            scroll.border_subtitle = "escape closes"
            yield Static(Content("tunetop keys"), classes="help-title")
            yield from key_rows(dashboard_rows(type(self.app).BINDINGS))
            yield Static("Runs are detached processes: quitting, closing the terminal or losing the SSH connection "
                         "leaves them training. Start `tunetop` again to see every run with its full history.",
                         classes="help-note", markup=False)
