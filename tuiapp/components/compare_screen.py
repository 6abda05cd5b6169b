"""The compare screen: 2-6 marked runs, their loss curves overlaid, and a table of what differs.

Opened from the dashboard with `c` after marking runs with space. The data comes from the run directories
(engine.report.compare, the same as `tunetop compare`), read in a thread so a long run never blocks the UI.
Keys: x switches the x axis between steps and tokens seen, e between train and eval loss, escape goes back.
"""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from engine.errors import TunetopError
from engine.report import compare

from .multi_chart import COLORS, MultiChart
from .keys_footer import KeysFooter


class CompareScreen(Screen):
    BINDINGS = [
        Binding("x", "toggle_x", "Step/tokens", tooltip="x axis: steps or tokens seen"),
        Binding("e", "toggle_eval", "Train/eval", tooltip="train loss or eval loss"),
        Binding("escape,q,c", "close", "Back", key_display="esc", tooltip="back to the dashboard"),
    ]
    DEFAULT_CSS = """
    CompareScreen > Vertical { height: 1fr; }
    CompareScreen #compare-chart { height: 1fr; min-height: 5; border: round $primary; }
    CompareScreen #compare-legend { height: auto; padding: 0 1; }
    CompareScreen #compare-table { height: auto; max-height: 50%; }
    """

    def __init__(self, run_dirs: list[Path]):
        super().__init__()
        self.run_dirs = [Path(d) for d in run_dirs]
        self.runs: list = []
        self.x = "step"
        self.evals = False
        self.error: str | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            self.chart = MultiChart(id="compare-chart")
            self.chart.border_title = f"compare {len(self.run_dirs)} runs: loading…"
            yield self.chart
            self.legend = Static("", id="compare-legend")
            yield self.legend
            self.table = DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
            yield self.table
        yield KeysFooter()

    def on_mount(self) -> None:
        self.run_worker(self._load, thread=True, exclusive=True, name="load compare")

    def _load(self) -> None:
        try:
            runs, error = compare.load(self.run_dirs), None
        except TunetopError as exc:
            runs, error = [], exc.message + (f" ({exc.hint})" if exc.hint else "")
        self.app.call_from_thread(self._loaded, runs, error)

    def _loaded(self, runs, error) -> None:
        self.runs, self.error, self.loaded = runs, error, True
        if error:
            self.chart.show([], empty=f"cannot compare: {error}")
            self.chart.border_title = "compare"
            return
        self._draw()
        self._fill_table()

    def _draw(self) -> None:
        series = compare.curves(self.runs, self.x, evals=self.evals)
        what = "eval loss" if self.evals else "train loss"
        self.chart.border_title = f"{what} of {len(self.runs)} runs, x = {self.x}s seen" if self.x == "tokens" \
            else f"{what} of {len(self.runs)} runs, x = step"
        self.chart.border_subtitle = "x: step/tokens  e: train/eval  esc: back"
        self.chart.show(series, x_label="tokens" if self.x == "tokens" else "step",
                        empty=f"no {what} points in these runs" + (" (no tokens_seen in old runs)"
                                                                   if self.x == "tokens" else ""))
        legend = Text()
        for i, r in enumerate(self.runs):
            if i:
                legend.append("   ")
            legend.append("■ ", style=COLORS[i % len(COLORS)])
            legend.append(f"{i + 1} {r.run_id}")
        self.legend.update(legend)

    def _fill_table(self) -> None:
        self.table.clear(columns=True)
        self.table.add_column("", key="label")
        for i, _ in enumerate(self.runs):
            self.table.add_column(Text(str(i + 1), style=f"bold {COLORS[i % len(COLORS)]}"), key=f"r{i}")
        for label, values in compare.table(self.runs):
            self.table.add_row(label, *values)

    def action_toggle_x(self) -> None:
        self.x = "tokens" if self.x == "step" else "step"
        if self.runs:
            self._draw()

    def action_toggle_eval(self) -> None:
        self.evals = not self.evals
        if self.runs:
            self._draw()

    def action_close(self) -> None:
        self.app.pop_screen()
