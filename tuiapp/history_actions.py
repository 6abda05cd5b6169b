"""Dashboard keys for history: mark runs (space), compare them (c), filter the table (/), and toasts.

A mixin of TunetopApp (like actions.RunActions). Its BINDINGS merge with the app's (Textual merges BINDINGS
along the class hierarchy), and its on_mount runs beside the app's (Textual calls each class's handler).
The app calls `filter_views` and `show_marks` where it fills the runs table.
"""
from __future__ import annotations

from functools import partial

from textual.binding import Binding

from . import alerts
from .fmt import size
from .history import matches

MAX_COMPARE = 6


class HistoryActions:
    BINDINGS = [
        Binding("space", "mark", "Mark", tooltip="mark or unmark the run in focus for compare"),
        Binding("c", "compare", "Compare", tooltip="compare the marked runs (2-6): loss overlaid, what differs"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="filter the runs table by words"),
    ]
    marked: list
    run_filter: str = ""

    def on_mount(self) -> None:
        self.marked = []
        self.disk_sizes: dict[str, int] = {}
        stop = self._stop
        self.run_worker(partial(alerts.alerts_loop, self.runs_root, self.post_message, stop),
                        thread=True, group="alerts", exclusive=True, name="run alerts")

    # -- the runs table -----------------------------------------------------------------------------------

    def filter_views(self, views: list) -> list:
        if not self.run_filter:
            return views
        # RunView snapshots carry .state; older RunTrackers keep it in .data.
        return [v for v in views if matches(getattr(v, "state", None) or v.data.state, text=self.run_filter)]

    def show_marks(self) -> None:
        table = self.table
        for run_id in getattr(self, "marked", []):
            if run_id in table._order:
                table.update_cell(run_id, "run", f"● {run_id}", update_width=True)
        note = []
        if self.run_filter:
            note.append(f"filter: {self.run_filter}")
        if getattr(self, "marked", None):
            note.append(f"{len(self.marked)} marked")
        disk = getattr(self, "disk_sizes", {}).get(self.focus_run or "")
        if disk is not None:
            note.append(f"{self.focus_run}: {size(disk)} on disk")
        text = " · ".join(note) or str(self.runs_root)
        if str(self.runs_box.border_subtitle or "") != text:   # each assignment repaints
            self.runs_box.border_subtitle = text

    def action_mark(self) -> None:
        run_id = self.focus_run
        if not run_id:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
            if run_id in self.table._order:
                self.table.update_cell(run_id, "run", run_id, update_width=True)
        elif len(self.marked) >= MAX_COMPARE:
            self.notify(f"at most {MAX_COMPARE} runs can be compared; unmark one first", severity="warning")
            return
        else:
            self.marked.append(run_id)
        self.show_marks()

    def action_compare(self) -> None:
        from .components.compare_screen import CompareScreen
        marked = [r for r in self.marked if (self.runs_root / r).is_dir()]
        if len(marked) < 2:
            self.notify("mark 2 to 6 runs with space, then press c", severity="warning")
            return
        self.push_screen(CompareScreen([self.runs_root / r for r in marked]))

    def action_filter(self) -> None:
        from .components.filter_dialog import FilterDialog

        def done(text):
            if text is not None:
                self.run_filter = text
                self._show_runs()
        self.push_screen(FilterDialog(self.run_filter), done)

    # -- toasts -------------------------------------------------------------------------------------------

    def on_alert(self, msg: alerts.Alert) -> None:
        n = msg.notice
        severity = {"error": "error", "warning": "warning"}.get(n.level, "information")
        self.notify(n.body.split("\n")[0], title=n.title.removeprefix("tunetop: "), severity=severity,
                    timeout=15 if severity != "information" else 8)
        self.bell()

    def on_disk_use(self, msg: alerts.DiskUse) -> None:
        self.disk_sizes = msg.sizes
        self.show_marks()
