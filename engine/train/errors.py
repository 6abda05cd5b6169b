"""Errors the engine reports as a failed run with a hint (kept free of heavy imports)."""


class SetupError(Exception):
    """A configuration this machine cannot run; the message says what to change."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint
