"""Errors the engine reports as a failed run with a hint (kept free of heavy imports)."""
from __future__ import annotations

from ..errors import TunetopError


class SetupError(TunetopError):
    """A configuration this machine cannot run; the message says what to change."""
