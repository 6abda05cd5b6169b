"""The help screen (?): every key, and what quitting does to runs."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("↑ ↓", "move in the runs table (the run under the cursor is the one in focus)"),
    ("enter", "focus the selected run"),
    ("s", "stop the run in focus (asks first; it saves a checkpoint, then exits)"),
    ("r", "resume the run in focus from its last checkpoint"),
    ("l", "open the run's engine log (full screen, follows it live)"),
    ("d", "delete a finished run's folder (asks first; refused while it runs)"),
    ("n", "new run (the run builder)"),
    ("L", "launch a profile as it is"),
    ("ctrl+p", "command palette: every action, and the theme (light / dark)"),
    ("?", "this help"),
    ("q", "quit the dashboard: runs keep training; `tunetop` reattaches"),
    ("escape", "close a screen or dialog"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", show=True)]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        lines = [Content.styled("tunetop keys", "bold $primary"), Content("")]
        for key, what in KEYS:
            lines.append(Content.assemble((f"{key:>7}", "bold $accent"), "  ", what))
        lines += [Content(""), Content.styled(
            "Runs are detached processes: quitting, closing the terminal or losing the SSH connection leaves "
            "them training. Start `tunetop` again to see every run with its full history.", "$text-muted")]
        with VerticalScroll() as scroll:
            scroll.border_title = "help"
            scroll.border_subtitle = "escape closes"
            yield Static(Content("\n").join(lines))
