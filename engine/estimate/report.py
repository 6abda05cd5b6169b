"""The rule-of-thumb figures users already know (the text reports are engine/plan/report.py's).

Why show the rule of thumb: users compare against it anyway; showing it beside the computed figure (and
saying which one to trust) answers "why is this different from what I read" before it is asked.
"""

from __future__ import annotations

from typing import NamedTuple


class RuleOfThumb(NamedTuple):
    method: str
    billions: float  # model size, billions of parameters
    gb: float  # commonly quoted peak, GB
    note: str


# docs/facts.md, "VRAM estimate: facts": worth showing beside the estimate, not trusting.
RULES_OF_THUMB: list[RuleOfThumb] = [
    RuleOfThumb("qlora", 7, 9, "batch 4"),
    RuleOfThumb("qlora", 13, 15, "batch 4"),
    RuleOfThumb("qlora", 30, 28, "batch 4"),
    RuleOfThumb("qlora", 70, 60, "batch 4"),
    RuleOfThumb("lora", 7, 20, ""),
    RuleOfThumb("full", 7, 60, ""),
]


def rule_of_thumb(method: str, params: int) -> RuleOfThumb | None:
    """The quoted figure for the same method and the nearest size (within a factor of 2), or None."""
    b = params / 1e9
    rows = [r for r in RULES_OF_THUMB if r.method == method and 0.5 <= b / r.billions <= 2]
    return min(rows, key=lambda r: abs(r.billions - b)) if rows else None
