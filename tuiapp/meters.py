"""Small text pieces shared by the panels: meters coloured by threshold, "n/a" for unknown figures.

Colours are theme variables ($success, $warning, $error) resolved by Textual's markup, so they follow the
light or dark theme, and NO_COLOR turns them off; the bar's shape carries the figure without colour.
"""
from __future__ import annotations

from textual.content import Content

from .fmt import NA


def level(fraction: float | None) -> str:
    if fraction is None:
        return "$text-muted"
    return "$error" if fraction >= 0.9 else "$warning" if fraction >= 0.7 else "$success"


def meter(used: float | None, total: float | None, width: int) -> Content:
    """A bar of `width` cells: filled part coloured by threshold, the rest dim."""
    width = max(1, width)
    if used is None or not total:
        return Content.styled("░" * width, "$text-muted")
    frac = min(1.0, max(0.0, used / total))
    filled = int(round(frac * width))
    return Content.assemble((("█" * filled), level(frac)), ("░" * (width - filled), "$text-muted"))


def pct(v: float | None) -> str:
    return NA if v is None else f"{v:.0f}%"
