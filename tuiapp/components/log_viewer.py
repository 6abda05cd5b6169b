"""The full engine log of a run, in its own screen, following it live (escape or q closes)."""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

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
        self._offset = 0
        self._partial = ""

    def compose(self) -> ComposeResult:
        yield Static(f"engine log: {self.title_text}  ({self.path})", id="log-title", markup=False)
        yield Log(highlight=False, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one(Log)
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            log.write_line(f"cannot read {self.path}: {exc.strerror or exc}")
            return
        if size > MAX_BYTES:
            self._offset = size - MAX_BYTES
            log.write_line(f"[... the first {(size - MAX_BYTES) >> 20} MiB are not shown; `tunetop logs` prints all]")
        self._read()
        log.focus()
        self.set_interval(0.5, self._read)

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(MAX_BYTES)
        except OSError:
            return
        if not data:
            return
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        if lines:
            self.query_one(Log).write_lines(line.rsplit("\r", 1)[-1] for line in lines)

    def action_top(self) -> None:
        self.query_one(Log).scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one(Log).scroll_end(animate=False)
