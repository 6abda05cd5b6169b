"""The runs table: every run, running first then newest. Only cells whose text changed are updated; rows
are rebuilt only when the order or the set of runs changed (the cursor stays on the same run)."""
from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from .. import fmt
from ..keys import RUNS_TABLE
from ..fmt import short_model, status_glyph
from ..tracker import RunView

FULL = (("status", "STATUS"), ("run", "RUN"), ("profile", "PROFILE"), ("model", "MODEL"), ("method", "METHOD"),
        ("step", "STEP"), ("loss", "LOSS"), ("elapsed", "ELAPSED"))
SHORT = {"failed to start": "no start"}   # the detail panel says it in full
WIDTHS = {"status": 13}   # fixed: "! interrupted"; the others fit their content
MEDIUM = (("status", "STATUS"), ("run", "RUN"), ("profile", "PROFILE"), ("method", "METHOD"), ("step", "STEP"),
          ("loss", "LOSS"), ("elapsed", "ELAPSED"))
COMPACT = (("status", "STATUS"), ("run", "RUN"), ("step", "STEP"), ("loss", "LOSS"), ("elapsed", "ELAPSED"))


def columns_for(width: int) -> tuple:
    """As many columns as fit: the run id already names the profile, so model goes first, then profile."""
    return FULL if width >= 150 else MEDIUM if width >= 110 else COMPACT


def row_values(t: RunView) -> dict[str, str]:
    s = t.state
    model = short_model(s.model)
    loaded = t.loaded or t.preview
    return {
        "status": s.status if loaded else "loading",
        "run": t.run_id,
        "profile": short_model(s.profile or "?", 20),
        "model": model,
        "method": s.method or "-",
        "step": f"{s.step}/{s.total_steps or '?'}" if loaded else "-",
        "loss": fmt.number(s.loss) if loaded else "-",
        "elapsed": fmt.coarse_duration(s.elapsed) if loaded else "-",
    }


class RunsTable(DataTable):
    BINDINGS = RUNS_TABLE

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.compact = False
        self._order: list[str] = []
        self._values: dict[str, dict[str, str]] = {}
        self._columns: tuple = ()
        self._widest: dict[str, int] = {}   # the longest text per column in the rows shown (see _grows)

    def on_mount(self) -> None:
        self._set_columns(FULL)

    def _set_columns(self, cols: tuple) -> None:
        if cols == self._columns:
            return
        self.clear(columns=True)
        self._columns = cols
        for key, label in cols:
            self.add_column(label, key=key, width=WIDTHS.get(key))
        self._order, self._values, self._widest = [], {}, {}

    def show(self, trackers: list[RunView], width: int) -> None:
        self._set_columns(columns_for(width))
        keys = [key for key, _ in self._columns]
        order = [t.run_id for t in trackers]
        values = {t.run_id: row_values(t) for t in trackers}
        if order != self._order:
            current = self.current_run()
            self.clear()
            self._widest = {}
            for run_id in order:
                row = values[run_id]
                for k in keys:
                    self._widest[k] = max(self._widest.get(k, 0), len(row[k]))
                self.add_row(*[self._cell(k, row[k]) for k in keys], key=run_id)
            self._order = order
            if current in order:
                self.move_cursor(row=order.index(current), animate=False)
        else:
            for run_id in order:
                self._update_row(run_id, self._values.get(run_id, {}), values[run_id])
        self._values = values

    def _update_row(self, run_id: str, old: dict[str, str], new: dict[str, str]) -> None:
        for k, _ in self._columns:
            if old.get(k) != new[k]:
                self.update_cell(run_id, k, self._cell(k, new[k]), update_width=self._grows(k, new[k]))

    def _grows(self, key: str, text: str) -> bool:
        """Whether a cell's new text is wider than any in its column. Only then is the column measured
        again: Textual re-measures a whole column when a narrower cell is updated with update_width, which
        made loading 200 runs quadratic (one 200-row scan per cell as each run's figures arrived). A column
        that could shrink stays as wide until the rows are rebuilt."""
        if key in WIDTHS or len(text) <= self._widest.get(key, 0):
            return False
        self._widest[key] = len(text)
        return True

    def _cell(self, key: str, value: str):
        if key != "status":
            return value
        symbol, var = status_glyph(value) if value != "loading" else ("…", "$text-muted")
        color = self.app.get_css_variables().get(var.lstrip("$"))
        return Text(f"{symbol} {SHORT.get(value, value)}", style=Style(color=color) if color and not color.startswith("auto") else "")

    def show_one(self, view: RunView) -> None:
        """Bring one row up to date (the run in focus, as its panel redraws: the two never disagree)."""
        if view.run_id not in self._order:
            return
        new = row_values(view)
        self._update_row(view.run_id, self._values.get(view.run_id, {}), new)
        self._values[view.run_id] = new

    def restyle(self) -> None:
        """After a theme change: status colours come from the theme."""
        for run_id in self._order:
            self.update_cell(run_id, "status", self._cell("status", self._values[run_id]["status"]))

    def current_run(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def select_run(self, run_id: str) -> None:
        if run_id in self._order:
            self.move_cursor(row=self._order.index(run_id), animate=False)
