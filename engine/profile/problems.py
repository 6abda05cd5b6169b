"""A problem found in a profile (the field, what is wrong, the fix) and the error that carries them all."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import TunetopError


@dataclass(frozen=True)
class Problem:
    where: str    # "training.micro_batch", or "" for the file as a whole
    message: str
    hint: str = ""

    def text(self, source: str | None = None) -> str:
        """`SOURCE: WHERE: MESSAGE`, without the hint."""
        head = f"{source}: " if source else ""
        return f"{head}{self.where}: {self.message}" if self.where else f"{head}{self.message}"

    def render(self, source: str | None) -> str:
        """The text with its hint on the next line (`  hint: ...`), as engine.errors.render_text lays it out."""
        return f"{self.text(source)}\n  hint: {self.hint}" if self.hint else self.text(source)


class ProfileError(TunetopError):
    """A profile that cannot be used. `problems` holds every problem found; the message lists them all (one
    per line, each naming the file and the field) and the hint holds their hints (each after its field when
    there are several). Render it with engine.errors.render_text."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(p.text(source) for p in self.problems), _hints(self.problems))


def _hints(problems: list[Problem]) -> str:
    if len(problems) == 1:
        return problems[0].hint
    # Several: each after its field, lined up under the first (render_text prints "  hint: " before it).
    return "\n        ".join(f"{p.where}: {p.hint}" if p.where else p.hint for p in problems if p.hint)
