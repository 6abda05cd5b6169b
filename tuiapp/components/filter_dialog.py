"""The runs filter (`/`): words that every shown run must contain (id, profile, model, method or status)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class FilterDialog(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    FilterDialog { align: center bottom; }
    FilterDialog > Vertical { width: 70; max-width: 100%; height: auto; border: round $accent; background: $surface;
                              padding: 0 1; margin-bottom: 3; }
    """

    def __init__(self, current: str = ""):
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("filter runs: words in the id, profile, model, method or status (empty: all; esc: keep)")
            yield Input(value=self.current, placeholder="e.g. failed qlora", id="filter-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
