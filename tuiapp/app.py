"""The dashboard: `tunetop` with no arguments.

GPUs and host at the top, the run in focus in the middle (figures, loss chart, log tail), every run in a
table at the bottom. Telemetry and run following happen in thread workers (workers.py) that post messages;
the UI thread only draws. Runs are detached processes: quitting never touches them.
"""
from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from engine import paths
from engine.telemetry import GpuSource, NvmlSource

from . import keys, workers
from .actions import RunActions
from .history_actions import HistoryActions
from .components.gpu_panel import GpuPanel
from .components.host_panel import HostPanel
from .components.keys_footer import KeysFooter
from .components.log_tail import LogTailView
from .components.loss_chart import LossChart
from .components.run_summary import RunSummary
from .components.runs_table import RunsTable
from .messages import GpuSample, HostSample, RunsChanged
from .registry import RunRegistry, ordered_views

COMPACT_W, COMPACT_H = 110, 34   # below either, the compact layout (80x24 is the smallest we design for)
# How often new events reach each part (repaints are where the dashboard's CPU goes): the figures of the run
# in focus each second (its clocks tick), its chart and log tail every 3 s, the runs table every 5 s.
CURVE_EVERY_S = 3.0
TABLE_EVERY_S = 5.0


class TunetopApp(HistoryActions, RunActions, App[int]):
    CSS_PATH = Path(__file__).parent / "tunetop.tcss"   # absolute: subclasses may live anywhere
    TITLE = "tunetop"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [*keys.DASHBOARD, *HistoryActions.BINDINGS]   # + space, c, / (history_actions.py)
    DASHBOARD_ACTIONS = frozenset(b.action for b in BINDINGS)   # off on the builder and the log viewer

    def __init__(self, gpu_source: GpuSource | None = None, runs_root: Path | None = None,
                 device_interval: float = 1.0, process_interval: float = 2.0, poll_interval: float = 0.5,
                 host_source=None):
        """host_source: a function of the runs root returning a HostInfo (default engine.telemetry.sample_host;
        screenshots and snapshot tests pass a scripted one, as gpu_source is scripted)."""
        super().__init__()
        self.host_source = host_source
        self.gpu_source = gpu_source if gpu_source is not None else NvmlSource()
        self.runs_root = Path(runs_root) if runs_root else paths.runs_root()
        self.registry = RunRegistry(self.runs_root)
        self.intervals = (device_interval, process_interval, poll_interval)
        self.focus_run: str | None = None
        self.compact = False
        self._width = 120
        self._pending_focus: str | None = None
        self._gpu_last: GpuSample | None = None
        self._gpu_dirty = False
        self._host_last = None
        self.exit_note: str | None = None
        self._runs_note: str | None = None
        self._table_dirty = self._detail_dirty = False
        self._table_at = self._curve_at = 0.0
        self._statuses: dict[str, str] = {}
        self._views: dict = {}             # run id -> RunView, from the workers' messages
        self._runs_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- layout --------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: App.query_one searches the active screen, which is a dialog at times.
        self.gpus, self.host = GpuPanel(id="gpus"), HostPanel(id="host")
        self.summary, self.chart, self.logtail = RunSummary(id="summary"), LossChart(id="chart"), LogTailView(id="logtail")
        self.table, self.runs_error = RunsTable(id="table"), Static("", id="runs-error", markup=False)
        self.gpus.border_title = "GPUs"
        self.chart.border_title = self.chart.title()
        with Horizontal(id="top"):
            yield self.gpus
            with Vertical(id="host-box") as host:
                host.border_title = "host"
                yield self.host
        with Vertical(id="detail") as self.detail:
            self.detail.border_title = "run"
            with Horizontal(id="detail-top"):
                with VerticalScroll(id="summary-box"):
                    yield self.summary
                yield self.chart
            yield self.logtail
        with Vertical(id="runs") as self.runs_box:
            self.runs_box.border_title = "runs"
            yield self.runs_error
            yield self.table
        yield KeysFooter()

    def on_mount(self) -> None:
        self._layout(self.size.width, self.size.height)
        self.set_interval(1.0, self._tick)
        self.table.focus()
        # The workers start now, not after the first frame: deferring them (tried for the first frame with
        # 200 runs, which is within 2x without it) left the runs table painted with a column narrower than
        # its cells ("150/" for "150/400") in one test run in two: a paint that races DataTable's measuring.
        self._start_workers()

    def _start_workers(self) -> None:
        post = self.post_message
        dev_s, proc_s, poll_s = self.intervals
        self.run_worker(partial(workers.gpu_loop, self.gpu_source, self.registry, post, self._stop, dev_s, proc_s),
                        thread=True, group="gpu", exclusive=True, name="gpu telemetry")
        host = {"sample": self.host_source} if self.host_source else {}
        self.run_worker(partial(workers.host_loop, self.runs_root, post, self._stop, **host),
                        thread=True, group="host", exclusive=True, name="host telemetry")
        self.run_worker(partial(workers.runs_loop, self.registry, post, self._stop, self._wake, poll_s),
                        thread=True, group="runs", exclusive=True, name="follow runs")
        self.run_worker(partial(workers.load_loop, self.registry, post, self._stop, lambda: self.focus_run),
                        thread=True, group="load", exclusive=True, name="load runs")
        self.start_alerts()   # history_actions.py

    def on_unmount(self) -> None:
        self._stop.set()      # wakes every loop at once; they also check is_cancelled
        self._wake.set()

    def on_resize(self, event) -> None:
        self._layout(event.size.width, event.size.height)
        self.call_after_refresh(self._chart_labels)    # the chart's new width decides its subtitle's form

    def _layout(self, width: int, height: int) -> None:
        compact = width < COMPACT_W or height < COMPACT_H
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        screen.set_class(compact, "-compact")
        screen.set_class(height < 30, "-short")
        screen.set_class(height >= 50, "-tall")
        self.compact = compact
        self._width = width
        gpus = self.gpus
        gpus.proc_lines = 0 if height < 30 else (1 if compact else 3)
        self._show_gpus()                     # the room for processes may have changed
        self.summary.max_notes = 2 if compact else 5
        self._show_runs()

    # -- updates from the workers --------------------------------------------------------------------------

    # Telemetry is drawn on the next tick, with everything else that changed: one frame a second.
    def on_gpu_sample(self, msg: GpuSample) -> None:
        first = self._gpu_last is None
        self._gpu_last, self._gpu_dirty = msg, True
        if first:
            self._show_gpus()

    def on_host_sample(self, msg: HostSample) -> None:
        first = self._host_last is None
        self._host_last = msg.info
        if first:
            self.host.show(msg.info)

    def _show_gpus(self) -> None:
        msg, self._gpu_dirty = self._gpu_last, False
        if msg is None:
            return
        self.gpus.show(msg.devices, msg.procs, msg.error, msg.warning)
        n = len(msg.devices)
        _set(self.gpus, "border_subtitle", f"{n} detected" if n else "")

    def on_runs_changed(self, msg: RunsChanged) -> None:
        # The message carries immutable views: keep the newest of each run (two workers post, and a message
        # built earlier may arrive later), and draw only from them.
        views = {}
        for run_id, view in msg.views.items():
            old = self._views.get(run_id)
            views[run_id] = old if old is not None and old.version > view.version else view
        self._views = views
        self._runs_error = msg.error
        # Repaints are what the dashboard's CPU goes on (a table repaint costs tens of milliseconds), so
        # new events are coalesced: the run in focus redraws on the next tick (once a second), the table
        # every few seconds. What the user must see at once goes now: runs appearing or changing status.
        statuses = {v.run_id: v.state.status for v in views.values()}
        urgent = msg.structure or msg.error or statuses != self._statuses
        self._statuses = statuses
        before = self.focus_run
        if urgent:
            self._show_runs()
        else:
            self._table_dirty = True
        if self.focus_run != before or urgent:
            self._show_detail()
        elif self.focus_run in msg.ids:
            self._detail_dirty = True
        if msg.painted is not None:
            self.call_after_refresh(msg.painted.set)

    def focused_view(self):
        return self._views.get(self.focus_run) if self.focus_run else None

    def _show_runs(self) -> None:
        self._table_dirty = False
        self._table_at = time.monotonic()
        ordered = self.filter_views(ordered_views(self._views.values()))   # `/` (history_actions.py)
        table = self.table
        table.show(ordered, self._width)
        ids = [v.run_id for v in ordered]
        if self.focus_run not in ids:
            self.focus_run = table.current_run() or (ids[0] if ids else None)
        if self._pending_focus in ids:             # a run launched from here: the cursor goes to it
            self.focus_run, self._pending_focus = self._pending_focus, None
            table.select_run(self.focus_run)
        active = sum(v.state.active for v in ordered)
        _set(self.runs_box, "border_title", f"runs ({len(ids)}" + (f", {active} active)" if active else ")"))
        _set(self.runs_box, "border_subtitle", str(self.runs_root))
        self.show_marks()   # marks, filter and disk use (history_actions.py)
        if self._runs_error:
            note = "⚠ " + self._runs_error
        elif not ids:
            note = f"no runs yet under {self.runs_root}: n opens the run builder, L launches a profile"
        else:
            note = ""
        if note != self._runs_note:   # setting a widget's text or title repaints it: only on a change
            self._runs_note = note
            self.runs_error.display = bool(note)
            self.runs_error.update(note)

    def _show_detail(self, tick: bool = False, curve: bool = True) -> None:
        """Show the run in focus. tick: only the clocks moved. curve: the chart and event tail too."""
        self._detail_dirty = self._detail_dirty and not curve
        if curve:
            self._curve_at = time.monotonic()
        v = self.focused_view()
        detail = self.detail
        summary, chart, tail = self.summary, self.chart, self.logtail
        if v is None:
            _set(detail, "border_title", "run")
            summary.show(None)
            chart.show(None, 0, note="")
            tail.show(None)
            return
        _set(detail, "border_title", f"run {v.run_id}")
        summary.show(v, tick=tick)
        if not tick:
            self.table.show_one(v)     # the table's row says what the panel says
        if not curve:
            return
        total = v.state.total_steps or 0
        chart.show(v.curves(), total, note="" if v.loaded or v.preview else "loading…")
        self._chart_labels(v)
        tail.show(v.recent)

    def _chart_labels(self, v=None) -> None:
        """The chart's title (which curve, its legend) and subtitle (the x-axis and the view's switches)."""
        v = v if v is not None else self.focused_view()
        _set(self.chart, "border_title", self.chart.title())
        # The border keeps a corner and a space each side; 0 before the first layout (no limit yet).
        room = self.chart.size.width - 4 if self.chart.size.width else None
        reading = " · sampled, reading…" if v is not None and v.preview else ""
        _set(self.chart, "border_subtitle", self.chart.subtitle(room - len(reading) if room else None) + reading)

    def _tick(self) -> None:
        """Once a second: what new events changed (at each part's pace), and the clocks of the run in focus."""
        if self._stop.is_set():
            return
        now = time.monotonic()
        if self._gpu_dirty:
            self._show_gpus()
        if self._host_last is not None:
            self.host.show(self._host_last)    # repaints only if a figure changed as shown
        # The table's elapsed column has minute resolution: for the clock alone, every 30 s is enough.
        if (self._table_dirty and now - self._table_at >= TABLE_EVERY_S) or now - self._table_at > 30:
            self._show_runs()
        v = self.focused_view()
        if self._detail_dirty:
            self._show_detail(curve=now - self._curve_at >= CURVE_EVERY_S)
        elif v is not None and v.state.active:
            self._show_detail(tick=True, curve=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        run_id = event.row_key.value if event.row_key else None
        if run_id and run_id != self.focus_run:
            self.focus_run = run_id
            self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        run_id = event.row_key.value if event.row_key else None
        if run_id:
            self.focus_run = run_id
            self._show_detail()

    def action_chart_zoom(self) -> None:
        self.chart.set_view(recent=not self.chart.recent)
        self._chart_labels()

    def action_chart_log(self) -> None:
        self.chart.set_view(log_scale=not self.chart.log_scale)
        self._chart_labels()

    def action_chart_metric(self) -> None:
        self.chart.set_view(metric=self.chart.next_metric())
        self._chart_labels()

    def action_chart_x(self) -> None:
        self.chart.set_view(x_axis=self.chart.next_x_axis())
        self._chart_labels()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # The dashboard's keys act on the run in focus: on the builder or the log viewer they do nothing, so
        # they are off there (and off their footer); those screens and the dialogs bind q and escape to going
        # back (the builder asks first when there are unsaved edits).
        if action in self.DASHBOARD_ACTIONS:
            return self.screen is self.screen_stack[0]
        return True

    def watch_theme(self) -> None:
        if self.is_mounted(self.table):
            self.table.restyle()

def _set(widget, attr: str, value: str) -> None:
    """Assign a border title/subtitle only when it changes (each assignment repaints the widget)."""
    if str(getattr(widget, attr) or "") != value:
        setattr(widget, attr, value)


def main(argv: list[str] | None = None) -> int:
    app = TunetopApp()
    app.run()
    if app.exit_note:
        print(app.exit_note, flush=True)
        # Let the terminal read it before this process exits: Linux drops what a pty's reader has not yet
        # read once the program on it is gone, and tmux on a busy CPU lost the note 1 quit in 2-4 (a CPU
        # hog: 5 of 13 lost; with this pause 0 of 6).
        time.sleep(0.2)
    return app.return_code or 0
