"""What the dashboard's keys and palette commands do: stop, resume, logs, delete, new run, launch, help,
quit. A mixin of TunetopApp (app.py), which holds the registry, the focused run and the workers' events.

Every action reports through a notification; a failure is a message, never a traceback. Quitting never
touches a run: runs are detached processes and `tunetop` reattaches to them.
"""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import SystemCommand

from engine import rundir

# engine.launch (the launcher, torchrun planning, the validator) and the screens the keys open (help, logs,
# the launch picker) are imported by the actions that use them: the dashboard's first frame does not wait.

from .components.confirm import ConfirmScreen
from .errors_view import error_text
from .tracker import RunTracker


class RunActions:
    def _dialog_open(self) -> bool:
        """App keys also reach dialogs and the log viewer: don't stack a second screen on top of one."""
        return len(self.screen_stack) > 1

    def _focused_tracker(self, verb: str) -> RunTracker | None:
        if self._dialog_open():
            return None
        t = self.registry.get(self.focus_run)
        if t is None:
            self.notify(f"no run to {verb}: pick one in the runs table", severity="warning")
        return t

    def action_help(self) -> None:
        if not self._dialog_open():
            from .components.help_screen import HelpScreen
            self.push_screen(HelpScreen())

    def action_stop(self) -> None:
        t = self._focused_tracker("stop")
        if t is None:
            return
        status = t.view.state.status
        if not t.view.state.active and rundir.alive_pid(t.path) is None:
            self.notify(f"run {t.run_id} is not running (it is {status})", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            from engine import launch
            if yes:
                self._guard(lambda: (launch.stop(t.path), self.notify(
                    f"asked run {t.run_id} to stop: it finishes the current step, saves a checkpoint and exits")))
                self._wake.set()

        self.push_screen(ConfirmScreen(
            f"Stop run {t.run_id}?\n\nThe engine finishes the optimizer step it is in, saves a resumable "
            f"checkpoint and exits. r resumes it later.", yes="Stop"), answer)

    def action_resume(self) -> None:
        t = self._focused_tracker("resume")
        if t is None:
            return
        if not t.has_toml:
            self.notify(f"run {t.run_id} has no run.toml: it cannot be resumed", severity="error")
            return

        def go():
            from engine import launch
            launch.resume(t.path)
            ckpt = rundir.last_checkpoint(t.path)
            self.notify(f"resuming run {t.run_id} from {ckpt.name if ckpt else 'the beginning (no checkpoint)'}")
            self._wake.set()
        self._guard(go)

    def action_logs(self) -> None:
        t = self._focused_tracker("show")
        if t is not None:
            from .components.log_viewer import LogViewer
            self.push_screen(LogViewer(t.path / rundir.LOG, t.run_id))

    def _finished_tracker(self, verb: str) -> RunTracker | None:
        """The run in focus, if no engine runs it (delete and prune leave live runs alone)."""
        t = self._focused_tracker(verb)
        if t is not None and (t.view.state.active or rundir.alive_pid(t.path) is not None):
            self.notify(f"run {t.run_id} is still running: stop it first (s)", severity="error")
            return None
        return t

    def action_delete(self) -> None:
        t = self._finished_tracker("delete")
        if t is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete(t.path)

        self.push_screen(ConfirmScreen(
            f"Delete run {t.run_id}?\n\nIts folder goes, with checkpoints, adapter and log:\n{t.path}\n"
            "This cannot be undone.", yes="Delete"), answer)

    @work(thread=True, group="delete", exit_on_error=False)
    def _delete(self, path: Path) -> None:
        # A run folder can hold gigabytes of checkpoints: remove it off the UI thread.
        try:
            rundir.delete(path)
        except Exception as exc:
            self.call_from_thread(self.notify, f"cannot delete {path.name}: {exc}", severity="error")
            return
        self.call_from_thread(self.notify, f"deleted run {path.name}")
        self._wake.set()

    def action_new_run(self) -> None:
        if self._dialog_open():
            return
        try:
            from .builder import RunBuilderScreen   # built separately; optional
        except ImportError:
            self.notify("run builder not available: L launches a saved profile", severity="warning")
            return
        self._guard(lambda: self.push_screen(RunBuilderScreen(), self._after_builder))

    def _after_builder(self, result) -> None:
        if isinstance(result, (str, Path)) and Path(result).name:
            self._pending_focus = Path(result).name
            self._wake.set()

    def action_launch(self) -> None:
        from engine.profile import list_profiles
        if self._dialog_open():
            return

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._guard(lambda: self._launch(path))

        from .components.launch_picker import LaunchPicker
        self.push_screen(LaunchPicker(list_profiles()), chosen)

    def _launch(self, path: Path) -> None:
        from engine import launch
        from engine.profile import load_named
        profile = load_named(str(path))
        run_dir = launch.launch(profile, self.runs_root if not profile.output.runs_root else None)
        self._pending_focus = run_dir.name
        self.table.focus()
        if run_dir.parent.resolve() != self.runs_root.resolve():
            self.notify(f"launched run {run_dir.name} under {run_dir.parent} (the profile's output.runs_root); "
                        f"this dashboard shows {self.runs_root}", severity="warning", timeout=10)
        else:
            self.notify(f"launched run {run_dir.name}")
        self._wake.set()

    def _guard(self, fn) -> None:
        """Run an action; a failure becomes a notification, never a traceback."""
        try:
            fn()
        except Exception as exc:
            self.notify(error_text(exc), severity="error", timeout=8)

    async def action_quit(self) -> None:
        active = [t for t in self.registry.snapshot() if t.view.state.active]
        if active:
            n = len(active)
            self.exit_note = (f"{n} run{'s' if n > 1 else ''} still training; `tunetop` reattaches "
                              f"({', '.join(t.run_id for t in active)})")
        self._stop.set()
        self.exit(0)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Stop run", "Stop the run in focus (graceful, asks first)", self.action_stop)
        yield SystemCommand("Resume run", "Resume the run in focus from its last checkpoint", self.action_resume)
        yield SystemCommand("Open run log", "The engine log of the run in focus, full screen", self.action_logs)
        yield SystemCommand("Delete run", "Delete a finished run's folder (asks first)", self.action_delete)
        yield SystemCommand("New run", "Open the run builder", self.action_new_run)
        yield SystemCommand("Launch profile", "Start a detached run from a saved profile", self.action_launch)
        yield SystemCommand("Help", "Every key of the dashboard", self.action_help)
