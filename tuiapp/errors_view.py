"""The dashboard's one renderer for tunetop's error type: the message, then the hint on its own line.

The CLI's counterpart is engine.errors.render_text. Exceptions that are not TunetopErrors (an OSError
from a full disk, say) show their text; nothing here ever raises.
"""
from __future__ import annotations

from engine.errors import TunetopError


def error_text(exc: BaseException) -> str:
    if isinstance(exc, TunetopError):
        return f"{exc.message}\nhint: {exc.hint}" if exc.hint else exc.message
    text = str(exc).strip()
    return text or type(exc).__name__
