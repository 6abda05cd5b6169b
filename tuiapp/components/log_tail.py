"""The latest events of the run in focus, as readable lines (tuiapp/fmt.event_line), as many as fit.

Events, not engine.log: the log holds library output (warnings, progress bars, raw trainer dicts) that says
little at a glance; `l` opens the whole log."""
from __future__ import annotations

from textual.content import Content
from textual.widget import Widget


class LogTailView(Widget):
    DEFAULT_CSS = "LogTailView { height: 6; color: $text-muted; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lines: tuple[str, ...] | None = None

    def show(self, lines: tuple[str, ...] | None) -> None:
        """The run's recent lines (an immutable tuple from its RunView): same tuple, no repaint."""
        if lines is self.lines:
            return
        self.lines = lines
        self.refresh()

    def render(self) -> Content:
        if self.lines is None:
            return Content("")
        lines = self.lines[-self.size.height:] if self.size.height > 0 else ()
        if not lines:
            return Content.styled("(no events yet: l shows the engine's log)", "italic")
        w = self.size.width
        return Content("\n").join(Content(line).truncate(w, ellipsis=True) for line in lines)
