"""The one error type users see: a message and a hint, raised by every part of tunetop.

Profile, data, run, setup and out-of-memory errors all subclass `TunetopError`. The message says what
is wrong (naming the file, the field or the row); the hint says what to do instead. Neither carries the
other inside its text: renderers put them together, one for plain terminals (`render_text`, used by the
CLI and the engine's end event) and one in the dashboard (tuiapp/errors_view.py `error_text`).

`exit_code` is what the CLI exits with: 2 for bad input (the default), 1 for a run that failed.
"""
from __future__ import annotations


class TunetopError(Exception):
    exit_code = 2

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


def render_text(exc: BaseException, prefix: str = "error: ") -> str:
    """`error: MESSAGE` and, when there is one, `  hint: HINT` on the next line."""
    message = getattr(exc, "message", None) or str(exc)
    hint = getattr(exc, "hint", "")
    return f"{prefix}{message}\n  hint: {hint}" if hint else f"{prefix}{message}"
