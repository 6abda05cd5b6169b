"""The full engine log of a run, in its own screen, following it live (escape or q closes)."""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Log, Static

from engine.growing_file import GrowingFile

from .keys_footer import KeysFooter

MAX_BYTES = 8 << 20   # a log bigger than this opens at its last 8 MiB


class LogViewer(Screen[None]):
    BINDINGS = [
        Binding("escape,q,l", "app.pop_screen", "Close", show=True),
        Binding("g", "top", "Top", show=True),
        Binding("G", "bottom", "Bottom", show=True),
    ]
    DEFAULT_CSS = """
    LogViewer #log-title { height: 1; background: $primary; color: $text; padding: 0 1; }
    LogViewer Log { height: 1fr; }
    """

    def __init__(self, path: Path, title: str):
        super().__init__()
        self.path, self.title_text = path, title
        self._file = GrowingFile(path, tail_bytes=MAX_BYTES)

    def compose(self) -> ComposeResult:
        yield Static(f"engine log: {self.title_text}  ({self.path})", id="log-title", markup=False)
        yield Log(highlight=False, auto_scroll=True)
        yield KeysFooter()

    def on_mount(self) -> None:
        log = self.query_one(Log)
        if not self.path.exists():
            log.write_line(f"cannot read {self.path}: no such file (the engine has not started writing it)")
        self._read()
        log.focus()
        self.set_interval(0.5, self._read)

    def _read(self) -> None:
        chunk = self._file.read(MAX_BYTES)
        if chunk is None:
            return
        log = self.query_one(Log)
        if chunk.reset:
            log.clear()
            log.write_line("[the log was truncated or replaced: reading it again]")
        if chunk.skipped:
            log.write_line(f"[... the first {chunk.skipped >> 20} MiB are not shown; `tunetop logs` prints all]")
        if chunk.lines:
            # A carriage return redraws a line in a terminal (progress bars): keep what it ends as.
            log.write_lines(line.decode("utf-8", "replace").rsplit("\r", 1)[-1] for line in chunk.lines)

    def action_top(self) -> None:
        self.query_one(Log).scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one(Log).scroll_end(animate=False)
