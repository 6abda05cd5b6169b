"""The last lines of the focused run's engine.log, as many as fit."""
from __future__ import annotations

from contextlib import nullcontext

from textual.content import Content
from textual.widget import Widget

from ..logtail import LogTail


class LogTailView(Widget):
    DEFAULT_CSS = "LogTailView { height: 6; color: $text-muted; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.source: LogTail | None = None
        self.data_lock = nullcontext()
        self._key: tuple | None = None

    def show(self, log: LogTail | None, key: tuple | None = None, lock=None) -> None:
        if key is not None and key == self._key and log is self.source:
            return
        self._key = key
        self.source = log
        self.data_lock = lock or nullcontext()
        self.refresh()

    def render(self) -> Content:
        if self.source is None:
            return Content("")
        with self.data_lock:
            lines = self.source.tail(self.size.height)
        if not lines:
            return Content.styled("(the engine has not written to its log yet)", "italic")
        w = self.size.width
        return Content("\n").join(Content(line).truncate(w, ellipsis=True) for line in lines)
