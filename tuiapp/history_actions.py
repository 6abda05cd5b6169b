"""Dashboard keys for history: mark runs (space), compare them (c), filter the table (/), and toasts.

A mixin of TunetopApp (like actions.RunActions). Its BINDINGS merge with the app's (Textual merges BINDINGS
along the class hierarchy), and its on_mount runs beside the app's (Textual calls each class's handler).
The app calls `filter_views` and `show_marks` where it fills the runs table.
"""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.binding import Binding

from engine import rundir

from .components.confirm import ConfirmScreen
from .fmt import size
from .history import matches, prune_plan

if TYPE_CHECKING:   # the worker module (engine.notify under it) is imported when the app starts it (start_alerts)
    from . import alerts

MAX_COMPARE = 6


class HistoryActions:
    BINDINGS = [
        Binding("space", "mark", "Mark", tooltip="mark or unmark the run in focus for compare"),
        Binding("c", "compare", "Compare", tooltip="compare the marked runs (2-6): loss overlaid, what differs"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="filter the runs table by words"),
        Binding("p", "prune", "Prune", show=False,
                tooltip="prune the run in focus: delete all but its last complete checkpoint (asks first)"),
    ]
    marked: list
    run_filter: str = ""

    def on_mount(self) -> None:
        self.marked = []
        self.disk_sizes: dict[str, int] = {}

    def start_alerts(self) -> None:
        """The toasts' and disk use's worker; the app starts it with its other workers."""
        from . import alerts
        self.run_worker(partial(alerts.alerts_loop, self.runs_root, self.post_message, self._stop),
                        thread=True, group="alerts", exclusive=True, name="run alerts")

    # -- freeing disk space (what `tunetop prune` does) ------------------------------------------------------

    def action_prune(self) -> None:
        t = self._finished_tracker("prune")
        if t is None:
            return
        keep, doomed = prune_plan(t.path)
        if keep is None:
            self.notify(f"run {t.run_id} has no complete checkpoint to keep: nothing pruned "
                        "(d deletes the whole run)", severity="warning")
            return
        if not doomed:
            self.notify(f"run {t.run_id}: only {keep.name} is left, nothing to prune")
            return
        freed = sum(rundir.disk_use(p) for p in doomed)
        names = ", ".join(p.name for p in doomed)

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete_checkpoints(t.run_id, doomed, freed, keep.name)

        self.push_screen(ConfirmScreen(
            f"Prune run {t.run_id}?\n\nDelete {len(doomed)} checkpoint(s) ({names}; {size(freed)}), keeping "
            f"{keep.name}, the one a resume starts from.\nThis cannot be undone.", yes="Prune"), answer)

    @work(thread=True, group="prune", exit_on_error=False)
    def _delete_checkpoints(self, run_id: str, doomed: list[Path], freed: int, kept: str) -> None:
        # Checkpoints can be gigabytes: removed off the UI thread.
        try:
            for path in doomed:
                shutil.rmtree(path)
        except OSError as exc:
            self.call_from_thread(self.notify, f"cannot prune {run_id}: {exc}", severity="error")
            return
        self.call_from_thread(self.notify, f"pruned run {run_id}: freed {size(freed)}, kept {kept}")

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
