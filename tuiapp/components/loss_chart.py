"""A compact line chart of the run's curves, drawn in braille: the training loss with evaluation points
overlaid, the learning rate, or the grad norm (`g` cycles), over steps or tokens seen (`x`).

Each cell holds 2x4 braille dots, so a chart W cells wide shows 2W positions. The curve comes from
Series.columns(): the bins are merged into one mean per position, so drawing costs O(bins + cells)
whatever the run's length; the widget redraws only when the run's data version or its size changed.
On the tokens axis each bin is placed by the tokens seen at its last step (the "tokens" Series, read
through Series.at), so every curve keeps its one set of bins by step.
Eval points are a different glyph (◆) in another colour and bold, and the title is the legend.
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
# What `g` cycles through: (curve name in RunView.curves(), its name on screen), in this order.
METRICS = (("loss", "loss"), ("lr", "learning rate"), ("grad_norm", "grad norm"))
X_AXES = ("step", "tokens")


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
        self.curves: dict[str, Series] = {}
        self.x_max = 0
        self.note = ""
        self._key: tuple | None = None
        self.drawn: list[tuple[float, int, int]] = []   # (perf_counter, points, last step) of recent draws
        # z: the recent window instead of the whole run (late training is not squashed by the first loss);
        # y: a log scale for the value axis; g: which curve; x: steps or tokens seen along the bottom.
        self.recent = False
        self.log_scale = False
        self.metric = METRICS[0][0]
        self.x_axis = X_AXES[0]

    def show(self, curves: dict[str, Series] | None, x_max: int, note: str = "") -> None:
        """Point the chart at a run's curves (RunView.curves()): snapshots, never changed once handed over, so
        the same objects mean the same picture (no redraw)."""
        curves = curves or {}
        key = (x_max, note)
        if key == self._key and curves.keys() == self.curves.keys() and all(
                curves[k] is self.curves[k] for k in curves):
            return
        self._key = key
        self.curves, self.x_max, self.note = curves, x_max, note
        self.refresh()

    @property
    def loss(self) -> Series | None:
        return self.curves.get("loss")

    @property
    def shown(self) -> Series | None:
        """The curve on screen now (the metric `g` picked)."""
        return self.curves.get(self.metric)

    @property
    def evals(self) -> Series | None:
        """Eval points: drawn over the loss only (they are losses)."""
        return self.curves.get("eval") if self.metric == "loss" else None

    def set_view(self, recent: bool | None = None, log_scale: bool | None = None, metric: str | None = None,
                 x_axis: str | None = None) -> None:
        self.recent = self.recent if recent is None else recent
        self.log_scale = self.log_scale if log_scale is None else log_scale
        self.metric = self.metric if metric is None else metric
        self.x_axis = self.x_axis if x_axis is None else x_axis
        self.refresh()

    def next_metric(self) -> str:
        names = [m for m, _ in METRICS]
        return names[(names.index(self.metric) + 1) % len(names)]

    def next_x_axis(self) -> str:
        return X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]

    def by_tokens(self) -> bool:
        """The tokens axis, when asked for and the run logged tokens_seen (runs without it stay on steps)."""
        tokens = self.curves.get("tokens")
        return self.x_axis == "tokens" and tokens is not None and tokens.count > 0

    def _tokens_at(self, step: int) -> float:
        """Tokens seen by the end of a step: the tokens axis' coordinate (0 before the first step)."""
        return self.curves["tokens"].at(step) if step > 0 else 0.0

    def x_range(self) -> tuple[int, int]:
        """The steps drawn: [0, x_max], or the recent window when zoomed. On the tokens axis the run so far
        (the tokens of steps not yet trained are unknown)."""
        shown = self.shown
        last = shown.max_step if shown is not None and shown.count else 0
        evals = self.evals
        x_max = max(self.x_max, last, evals.max_step if evals else 0, 1)
        if self.by_tokens():
            x_max = max(last, evals.max_step if evals else 0, 1)
        if not self.recent or not last:
            return 0, x_max
        lo = max(0, last - max(RECENT_MIN, int(last * RECENT_SHARE)))
        return lo, max(last, lo + 1)

    def title(self) -> str:
        """The border title: which curve, and the legend of what is drawn."""
        name = dict(METRICS)[self.metric]
        return f"{name} ⠒ train  ◆ eval" if self.metric == "loss" else f"{name} ⠒"

    def subtitle(self, width: int | None = None) -> str:
        """The x-axis: steps or tokens seen, the window drawn, and the view's switches; in `width` characters
        when given (a narrow chart drops the spaces and brackets first, then the switches: never the axis)."""
        shown = self.shown
        if shown is None or not shown.count:
            return ""
        lo, hi = self.x_range()
        if self.by_tokens():
            axis, a, b = "tokens", _count(self._tokens_at(lo)), _count(self._tokens_at(hi))
        else:
            axis, a, b = "step", str(lo), str(hi)
        note = " (no tokens_seen)" if self.x_axis == "tokens" and axis == "step" else ""
        full = f"{axis} {a} … {b}{note}" + (" (recent)" if self.recent else "") + (" · log" if self.log_scale else "")
        if width is None or len(full) <= width:
            return full
        short = f"{axis} {a}…{b}{note}" + (" recent" if self.recent else "") + (" log" if self.log_scale else "")
        return short if len(short) <= width else f"{axis} {a}…{b}"

    def render(self) -> Text:
        text = self._render_chart()
        shown = self.shown
        if shown is not None:
            # When each state of the curve reached the screen (benchmarks and tests read this).
            self.drawn.append((time.perf_counter(), shown.count, shown.max_step))
            del self.drawn[:-8]
        return text

    def _render_chart(self) -> Text:
        w, h = self.size.width, self.size.height
        axis = self.get_component_rich_style("loss-chart--axis", partial=True)
        note_style = self.get_component_rich_style("loss-chart--note", partial=True)
        shown = self.shown
        if shown is None or shown.count == 0 or w <= AXIS_W + 2 or h < 1:
            name = dict(METRICS)[self.metric]
            msg = self.note or (f"no {name} yet: the curve appears with the first step" if self.loss is None
                                or not self.loss.count else f"no {name} in this run's step events")
            return Text(msg, style=note_style, overflow="ellipsis", no_wrap=True)
        return self._draw(shown, w, h, axis, note_style)

    def _draw(self, shown: Series, w: int, h: int, axis: Style, note_style: Style) -> Text:
        train = self.get_component_rich_style("loss-chart--train", partial=True)
        eval_style = self.get_component_rich_style("loss-chart--eval", partial=True)
        pw = w - AXIS_W
        x_min, x_max = self.x_range()
        xmap = self._tokens_at if self.by_tokens() else None
        cols = shown.columns(pw * 2, x_max, x_min, xmap)
        evals = self.evals
        ecols = evals.columns(pw, x_max, x_min, xmap) if evals and evals.count else []
        log = self.log_scale and any(c[0] > 0 for c in cols + ecols if c)
        if log:   # plotted as log10; the axis labels stay values; a 0 (a warm-up's first lr) is left out
            cols = [(math.log10(c[0]), 0.0, 0.0) if c and c[0] > 0 else None for c in cols]
            ecols = [(math.log10(c[0]), 0.0, 0.0) if c and c[0] > 0 else None for c in ecols]
        values = [c[0] for c in cols if c] + [c[0] for c in ecols if c]
        if not values:
            return Text("no steps in this window", style=note_style, no_wrap=True)
        lo, hi = min(values), max(values)
        if hi - lo < max(1e-12, abs(hi) * 1e-6):
            # A flat curve (a constant learning rate): centred, with room relative to its size.
            half = 0.5 if abs(hi) >= 1 or hi == 0 else abs(hi) * 0.5
            lo, hi = lo - half, hi + half
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
            label = _label(10 ** labels[r] if log else labels[r]) if r in labels else ""
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



def _label(v: float, width: int = AXIS_W - 2) -> str:
    """An axis label that fits its column: 6.226, 0.0763, 0.0002 (a learning rate), 1.5e-5, 1.2e7."""
    for text in (number(v, 4), f"{v:.4g}", f"{v:.3g}", f"{v:.2g}"):
        if len(text) <= width:
            return text
    mantissa, exp = f"{v:.1e}".split("e")
    short = f"{mantissa}e{int(exp)}"
    return short if len(short) <= width else f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _count(n: float) -> str:
    """Tokens on the axis: 950, 12.3k, 4.10M, 1.20B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"

