"""Several curves on one braille chart, each in its own colour (the compare screen's overlay).

Every series is rasterised into its own dot grid (2x4 dots per cell); a cell shows the dots of every series
that passes through it, in the colour of the series drawn last there. The y-range ignores the first 5 % of
each curve (the first losses of a run are far above the rest and would flatten everything after them).
"""
from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
COLORS = ("#3b82f6", "#ef4444", "#22c55e", "#f59e0b", "#a855f7", "#06b6d4")
AXIS_W = 9


class MultiChart(Widget):
    DEFAULT_CSS = """
    MultiChart { height: 1fr; min-height: 5; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.series: list[tuple[str, list[tuple[float, float]]]] = []
        self.x_label = "step"
        self.empty = "no data"

    def show(self, series, x_label: str = "step", empty: str = "no data") -> None:
        self.series, self.x_label, self.empty = series, x_label, empty
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width - AXIS_W, self.size.height - 1
        pts = [[(x, y) for x, y in s if x is not None and y is not None and math.isfinite(y)] for _, s in self.series]
        if width < 4 or height < 2 or not any(pts):
            return Text(self.empty, style="italic")
        xs = [x for p in pts for x, _ in p]
        ys = [y for p in pts for _, y in (p[len(p) // 20:] if len(p) >= 20 else p)]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        lo, hi = min(ys), max(ys)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        cells: dict[tuple[int, int], list] = {}
        for i, p in enumerate(pts):
            for x, y in _dense(p, x0, x1, width * 2):
                cx = min(width * 2 - 1, int((x - x0) / (x1 - x0) * (width * 2 - 1)))
                cy = int((hi - min(max(y, lo), hi)) / (hi - lo) * (height * 4 - 1))
                cell = cells.setdefault((cy // 4, cx // 2), [0, i])
                cell[0] |= _DOTS[cx % 2][cy % 4]
                cell[1] = i
        out = Text()
        for row in range(height):
            label = f"{hi:.4g}" if row == 0 else f"{lo:.4g}" if row == height - 1 else (
                f"{(hi + lo) / 2:.4g}" if row == (height - 1) // 2 else "")
            out.append(f"{label:>{AXIS_W - 2}} ┤", style="dim")
            for col in range(width):
                bits, who = cells.get((row, col), (0, None))
                if bits:
                    out.append(chr(0x2800 + bits), style=Style(color=COLORS[who % len(COLORS)]))
                else:
                    out.append(" ")
            out.append("\n")
        left, right = _num(x0), _num(x1)
        gap = max(1, width - len(left) - len(right) - len(self.x_label) - 1)
        out.append(" " * AXIS_W + left + " " * gap + right + " " + self.x_label, style="dim")
        return out


def _dense(points, x0, x1, columns):
    """The points, plus straight-line fill between neighbours so a sparse curve reads as a line."""
    if len(points) < 2:
        return points
    step = (x1 - x0) / max(1, columns)
    out = []
    for (xa, ya), (xb, yb) in zip(points, points[1:]):
        n = max(1, min(64, int(abs(xb - xa) / step) if step else 1))
        out += [(xa + (xb - xa) * k / n, ya + (yb - ya) * k / n) for k in range(n)]
    out.append(points[-1])
    return out


def _num(x: float) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.3g}k"
    return f"{x:.0f}"
