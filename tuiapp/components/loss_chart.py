"""A compact line chart of the training loss with evaluation points overlaid, drawn in braille.

Each cell holds 2x4 braille dots, so a chart W cells wide shows 2W positions. The curve comes from
Series.columns(): the bins are merged into one mean per position, so drawing costs O(bins + cells)
whatever the run's length; the widget redraws only when the run's data version or its size changed.
"""
from __future__ import annotations

import math
import time

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from ..fmt import number
from ..series import Series

# Dot bits of a braille cell: [column][row], rows top to bottom.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
AXIS_W = 8    # "6.2257 ┤"
RECENT_SHARE = 0.2     # the zoomed view: the last fifth of the steps so far (at least RECENT_MIN steps)
RECENT_MIN = 20


class LossChart(Widget):
    COMPONENT_CLASSES = {"loss-chart--train", "loss-chart--eval", "loss-chart--axis", "loss-chart--note"}
    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 3; }
    LossChart > .loss-chart--train { color: $primary; }
    LossChart > .loss-chart--eval { color: $warning; text-style: bold; }
    LossChart > .loss-chart--axis { color: $text-muted; }
    LossChart > .loss-chart--note { color: $text-muted; text-style: italic; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.loss: Series | None = None
        self.evals: Series | None = None
        self.x_max = 0
        self.note = ""
        self._key: tuple | None = None
        self.drawn: list[tuple[float, int, int]] = []   # (perf_counter, points, last step) of recent draws
        # z: the recent window instead of the whole run (late training is not squashed by the first loss);
        # y: a log scale for the loss axis.
        self.recent = False
        self.log_scale = False

    def show(self, loss: Series | None, evals: Series | None, x_max: int, note: str = "") -> None:
        """Point the chart at a run's curves: snapshots (RunView's), never changed once handed over, so the
        same objects mean the same picture (no redraw)."""
        key = (x_max, note)
        if loss is self.loss and evals is self.evals and key == self._key:
            return
        self._key = key
        self.loss, self.evals, self.x_max, self.note = loss, evals, x_max, note
        self.refresh()

    def set_view(self, recent: bool | None = None, log_scale: bool | None = None) -> None:
        self.recent = self.recent if recent is None else recent
        self.log_scale = self.log_scale if log_scale is None else log_scale
        self.refresh()

    def x_range(self) -> tuple[int, int]:
        """The steps drawn: [0, x_max], or the recent window when zoomed."""
        last = self.loss.max_step if self.loss is not None and self.loss.count else 0
        x_max = max(self.x_max, last, self.evals.max_step if self.evals else 0, 1)
        if not self.recent or not last:
            return 0, x_max
        lo = max(0, last - max(RECENT_MIN, int(last * RECENT_SHARE)))
        return lo, max(last, lo + 1)

    def subtitle(self) -> str:
        lo, hi = self.x_range()
        if self.loss is None or not self.loss.count:
            return ""
        return f"step {lo} … {hi}" + (" (recent)" if self.recent else "") + (" · log" if self.log_scale else "")

    def render(self) -> Text:
        text = self._render_chart()
        if self.loss is not None:
            # When each state of the curve reached the screen (benchmarks and tests read this).
            self.drawn.append((time.perf_counter(), self.loss.count, self.loss.max_step))
            del self.drawn[:-8]
        return text

    def _render_chart(self) -> Text:
        w, h = self.size.width, self.size.height
        axis = self.get_component_rich_style("loss-chart--axis", partial=True)
        note_style = self.get_component_rich_style("loss-chart--note", partial=True)
        if self.loss is None or self.loss.count == 0 or w <= AXIS_W + 2 or h < 1:
            msg = self.note or "no loss yet: the curve appears with the first step"
            return Text(msg, style=note_style, overflow="ellipsis", no_wrap=True)
        return self._draw(w, h, axis, note_style)

    def _draw(self, w: int, h: int, axis: Style, note_style: Style) -> Text:
        train = self.get_component_rich_style("loss-chart--train", partial=True)
        eval_style = self.get_component_rich_style("loss-chart--eval", partial=True)
        pw = w - AXIS_W
        x_min, x_max = self.x_range()
        cols = self.loss.columns(pw * 2, x_max, x_min)
        ecols = self.evals.columns(pw, x_max, x_min) if self.evals and self.evals.count else []
        log = self.log_scale and all(c[0] > 0 for c in cols + ecols if c)
        if log:   # plotted as log10; the axis labels stay losses
            cols = [(math.log10(c[0]), 0.0, 0.0) if c else None for c in cols]
            ecols = [(math.log10(c[0]), 0.0, 0.0) if c else None for c in ecols]
        values = [c[0] for c in cols if c] + [c[0] for c in ecols if c]
        if not values:
            return Text("no steps in this window", style=note_style, no_wrap=True)
        lo, hi = min(values), max(values)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 0.04
        lo, hi = lo - pad, hi + pad
        rows = h * 4

        def ydot(v: float) -> int:      # 0 = top dot row
            return min(rows - 1, max(0, int(round((hi - v) / (hi - lo) * (rows - 1)))))

        grid = [[0] * pw for _ in range(h)]

        def dot(x: int, y: int) -> None:
            grid[y // 4][x // 2] |= _DOTS[x % 2][y % 4]

        prev: tuple[int, float] | None = None
        for x, c in enumerate(cols):
            if c is None:
                continue
            if prev is None:
                dot(x, ydot(c[0]))
            else:
                # Join to the previous point (interpolating across empty positions) so it reads as a line.
                px, pv = prev
                last = ydot(pv)
                for xx in range(px + 1, x + 1):
                    y = ydot(pv + (c[0] - pv) * (xx - px) / (x - px))
                    for yy in range(min(last, y), max(last, y) + 1):
                        dot(xx, yy)
                    last = y
            prev = (x, c[0])
        marks = {}
        for x, c in enumerate(ecols):
            if c is not None:
                marks[(ydot(c[0]) // 4, x)] = True
        text = Text(no_wrap=True, overflow="crop")
        labels = {0: hi, h - 1: lo}
        if h >= 5:
            labels[(h - 1) // 2] = (hi + lo) / 2
        for r in range(h):
            label = number(10 ** labels[r] if log else labels[r], 4) if r in labels else ""
            text.append(f"{label:>{AXIS_W - 2}.{AXIS_W - 2}} " + ("┤" if r in labels else "│"), axis)
            row = grid[r]
            run_chars: list[str] = []
            for x in range(pw):
                if (r, x) in marks:
                    if run_chars:
                        text.append("".join(run_chars), train)
                        run_chars = []
                    text.append("◆", eval_style)
                else:
                    run_chars.append(chr(0x2800 + row[x]) if row[x] else " ")
            if run_chars:
                text.append("".join(run_chars), train)
            if r < h - 1:
                text.append("\n")
        return text

    @staticmethod
    def x_label(x_max: int) -> str:
        return f"step 0 … {x_max}" if x_max else ""

