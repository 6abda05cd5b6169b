"""The run builder (n on the dashboard): pick a profile or start blank, edit it in a form generated from the
schema, watch the VRAM estimate and the dataset preview follow the edits, then save, save as, or launch.

The screen dismisses with the launched run's directory (a Path), or None when closed without launching;
the dashboard focuses that run. See dialogs.HELP for the keys and what saving does to comments.
"""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Label, Select, Static
from textual.worker import get_current_worker

from engine import launch
from engine.errors import TunetopError
from engine.plan import detect
from engine.profile import Profile, ProfileError, find, list_profiles, preflight, validate
from engine.profile.validate import Problem

from ..components.confirm import ConfirmScreen
from ..errors_view import error_text
from ..keys import BUILDER
from . import session
from .dialogs import BuilderHelp, CapacityScreen, ChoiceScreen, NameScreen
from .estimate_panel import EstimatePanel
from .form import ChoiceField, ProfileForm
from .layout_picker import LayoutPicker
from .preview_panel import PreviewPanel
from .toml_update import has_comments
from ..components.keys_footer import KeysFooter

BLANK = "__blank__"
ESTIMATE_DELAY_S = 0.2     # typing a number recomputes the estimate once the keys stop
ESTIMATE_SECTIONS = ("model", "method", "training", "distributed")   # what the VRAM estimate reads
PREVIEW_DELAY_S = 1.5      # the preview reads the data and starts a tokenizer process: wait a little longer


class RunBuilderScreen(Screen[Path | None]):
    CSS_PATH = Path(__file__).parent / "builder.tcss"
    BINDINGS = BUILDER

    def __init__(self, profile: str | Path | None = "demo", gpu_source=None, preview_tokens: bool = True,
                 runs_root: Path | None = None):
        """profile: a name or path to open first (None: blank). gpu_source: an engine.telemetry source
        (default: the dashboard's, else NVML). preview_tokens: run the tokenizer preview subprocess."""
        super().__init__()
        self.initial = profile
        self.gpu_source = gpu_source
        self.runs_root = runs_root
        self._first = BLANK
        self._shown_options: list = []
        self.opened = session.blank()
        self.baseline: dict = {}
        self._preview_tokens = preview_tokens
        self._estimate_timer: Timer | None = None
        self._preview_timer: Timer | None = None
        self._preview_due = False
        self._problems: list[str] = []
        self._title = ""

    # -- layout --------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="rb-title", markup=False)
        with Horizontal(id="rb-top"):
            yield Label("profile", id="rb-pick-label")
            # Created with its value: a Select posts Changed for its first value, which must not reopen.
            self._first = self._initial_path()
            self._shown_options = self._picker_options()
            yield ChoiceField(self._shown_options, value=self._first, allow_blank=False, id="rb-pick",
                              compact=True)
        yield Static("", id="rb-notice", markup=False)
        with Horizontal(id="rb-body"):
            self.form = ProfileForm(id="rb-form")
            yield self.form
            with Vertical(id="rb-side"):
                self.estimate = EstimatePanel(id="rb-estimate")
                self.estimate.border_title = "VRAM estimate"
                yield self.estimate
                self.preview = PreviewPanel(tokens=self._preview_tokens, id="rb-preview")
                self.preview.border_title = "dataset preview"
                yield self.preview
        yield KeysFooter(compact=True)     # every builder key fits at 80 columns

    def on_mount(self) -> None:
        self._open(self._first)
        self._detect_gpus()
        self.query_one("#rb-pick").focus()

    def _picker_options(self) -> list[tuple[str, str]]:
        from engine.profile import is_bundled
        opts = [("blank profile", BLANK)]
        listed = list_profiles()
        # A profile opened by its path from elsewhere (`tunetop` run from a project folder) is listed too: a
        # Select refuses a value it has no option for.
        extra = [Path(v) for v in (self._first, str(self.opened.path) if self.opened.path else BLANK)
                 if v != BLANK and Path(v) not in listed]
        for p in listed + list(dict.fromkeys(extra)):
            opts.append((f"{p.stem}  (bundled)" if is_bundled(p) else f"{p.stem}  ({p.parent})", str(p)))
        return opts

    def _initial_path(self) -> str:
        if self.initial is None:
            return BLANK
        try:
            return str(find(str(self.initial)))
        except ProfileError as exc:
            self.notify(error_text(exc), severity="error")
            return BLANK

    # -- opening -------------------------------------------------------------------------------------------

    def _open(self, choice: str) -> None:
        if choice == BLANK:
            opened = session.blank()
        else:
            try:
                opened = session.open_profile(choice)
            except ProfileError as exc:
                self.notify(error_text(exc), severity="error", timeout=10)
                self._set_picker(self._current_choice())
                return
        self.opened = opened
        self.form.load(opened.profile)
        self.baseline = self.form.snapshot()
        self._set_picker(self._current_choice())
        self._refresh(preview=True)
        self._update_title()
        if opened.not_kept:
            self.notify("some entries of this file are not in the form (listed at the top); saving leaves them out",
                        severity="warning", timeout=8)

    def _current_choice(self) -> str:
        return str(self.opened.path) if self.opened.path else BLANK

    def _set_picker(self, value: str) -> None:
        pick = self.query_one("#rb-pick", Select)
        options = self._picker_options()
        if value not in {v for _, v in options}:
            value = BLANK
        if options != self._shown_options:      # a profile was saved as new: list it
            self._shown_options = options
            pick.set_options(options)
        pick.value = value

    def on_select_changed(self, event: Select.Changed) -> None:
        # The select's value now, not the event's: setting options then a value posts two events, and only
        # the last value counts. A value equal to the open profile is our own doing.
        if event.select.id != "rb-pick":
            return
        event.stop()
        choice = str(event.select.value)
        if choice == self._current_choice():
            return
        if not self.dirty:
            self._open(choice)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._open(choice)
            else:
                self._set_picker(self._current_choice())

        self.app.push_screen(ConfirmScreen("Open another profile? Your unsaved edits in this one are lost.",
                                           yes="Open"), answer)

    # -- live checks -------------------------------------------------------------------------------------------

    def on_layout_picker_picked(self, event: LayoutPicker.Picked) -> None:
        """GPUs or a strategy chosen in the VRAM panel: they are the form's [distributed] fields, set there so
        that validation, the estimate, the unsaved-edits mark and saving treat them as typed values."""
        event.stop()
        for key, value in event.values.items():
            row = self.form.rows.get(("distributed", key))
            if row is not None and row.get() != value:
                row.set(value)

    @property
    def dirty(self) -> bool:
        return self.form.snapshot() != self.baseline

    def on_profile_form_changed(self, event: ProfileForm.Changed) -> None:
        if self._estimate_timer:
            self._estimate_timer.stop()
        self._estimate_timer = self.set_timer(ESTIMATE_DELAY_S, self._refresh)
        if event.section in ("model", "data") or event.key in ("max_seq_len", "completion_only_loss", "packing"):
            self._preview_due = True
            if self._preview_timer:
                self._preview_timer.stop()
            self._preview_timer = self.set_timer(PREVIEW_DELAY_S, self._refresh_preview)
        self._update_title()

    def _refresh(self, preview: bool = False) -> None:
        profile = self.current_profile()
        # A refused value would be estimated at its default (micro_batch 0 showed as 4): wait for a valid one.
        refused = next((f"{s}.{k} ({msg})" for (s, k), msg in self.form.errors.items()
                        if s in ESTIMATE_SECTIONS and self.form.rows[(s, k)].display), None)
        if refused:
            self.estimate.wait_for(refused)
        else:
            self.estimate.show(profile)
        problems = self._problems_of()
        self.form.set_problems({tuple(p.where.split(".", 1)): _text(p) for p in problems if "." in p.where})
        self._problems = [_text(p, with_where=True) for p in problems if "." not in p.where]
        self._update_notice()
        if preview:
            self._preview_due = True
            self._refresh_preview()

    def _refresh_preview(self) -> None:
        if not self._preview_due:
            return
        self._preview_due = False
        self.preview.request(self.current_profile())

    def _update_title(self) -> None:
        op = self.opened
        # What matters first, the path last: the line wraps (never cut) in a narrow terminal.
        parts = ["run builder", self.profile_name()]
        if self.dirty:
            parts.append("unsaved edits")
        if op.bundled:
            parts.append("bundled: read-only, saving asks for a new name")
        parts.append(str(op.path) if op.path else "not saved yet")
        title = " · ".join(parts)
        if title != self._title:
            self._title = title
            self.query_one("#rb-title", Static).update(title)

    def _update_notice(self) -> None:
        lines = list(self._problems)
        if self.opened.not_kept:
            lines.append("not in the form (saving leaves these out): " + "; ".join(self.opened.not_kept))
        text = "\n".join(lines)
        if text == getattr(self, "_notice", None):
            return              # called on every edit: a repaint here re-lays out the whole form
        self._notice = text
        notice = self.query_one("#rb-notice", Static)
        notice.update(text)
        notice.display = bool(lines)

    # -- building the profile ----------------------------------------------------------------------------------

    def profile_name(self) -> str:
        return self.opened.profile.name or "untitled"

    def _raw(self) -> dict:
        raw = self.form.values()
        raw["name"] = self.profile_name()
        return raw

    def _resolve_base(self) -> Path:
        # A relative path typed in the form means what it means in the file (the schema's hint): next to the
        # opened profile; for a blank one, from where tunetop was started. Saved files hold absolute paths.
        return self.opened.path or Path.cwd() / f"{self.profile_name()}.toml"

    def current_profile(self) -> Profile:
        """The form as a profile, refused values left at their defaults (for the estimate and the preview)."""
        profile = session.lenient_profile(self._raw(), self._resolve_base(), [])
        profile.source = str(self.opened.path) if self.opened.path else None
        return profile

    def _problems_of(self) -> list[Problem]:
        try:
            validate(self._raw(), source=self._resolve_base())
        except ProfileError as exc:
            return [p for p in exc.problems if tuple(p.where.split(".", 1)) not in self.form.errors]
        return []

    def strict_profile(self) -> Profile | None:
        """The form as a valid profile, or None after pointing at the first problem."""
        # The first refused value in form order. Hidden fields (another method's) are not written: ignored.
        bad = next((r for k, r in self.form.rows.items() if r.display and k in self.form.errors), None)
        if bad is not None:
            message = self.form.errors[(bad.section, bad.key)]
            self.notify(f"{bad.section}.{bad.key}: {message}", title="fix this first", severity="error")
            bad.editor.focus()
            return None
        try:
            profile = validate(self._raw(), source=self._resolve_base())
        except ProfileError as exc:
            first = exc.problems[0]
            self.notify(_text(first, with_where=True), title="fix this first", severity="error", timeout=8)
            if "." in first.where:
                self.form.focus_field(*first.where.split(".", 1))
            return None
        profile.source = str(self.opened.path) if self.opened.path else None
        return profile

    # -- saving ----------------------------------------------------------------------------------------------

    def action_save(self) -> None:
        profile = self.strict_profile()
        if profile is None:
            return
        op = self.opened
        if op.path is None:
            self._ask_name(profile, "This profile has not been saved yet. Save it as:")
            return
        if op.bundled:
            self._ask_name(profile, f"{op.path.stem} is a bundled profile (read-only). Save your version as:")
            return
        state = session.changed_on_disk(op)
        if state:
            self._on_disk_changed(profile, state)
            return
        self._confirm_write(profile, op.path)

    def action_save_as(self) -> None:
        profile = self.strict_profile()
        if profile is not None:
            self._ask_name(profile, "Save as a new profile named:")

    def _ask_name(self, profile: Profile, question: str) -> None:
        stem = self.profile_name()
        # Not the bundled name itself: a user profile of that name would hide the bundled one.
        suggestion = (stem if self.opened.path is None else f"my-{stem}" if self.opened.bundled else f"{stem}-copy")

        def named(name: str | None) -> None:
            if name:
                profile.name = name
                self._confirm_write(profile, session.user_path(name))

        self.app.push_screen(NameScreen(question, "" if suggestion == "untitled" else suggestion), named)

    def _on_disk_changed(self, profile: Profile, state: str) -> None:
        path = self.opened.path
        what = "was deleted" if state == "deleted" else "changed on disk"

        def answer(choice: str | None) -> None:
            if choice == "reload" and state == "deleted":
                self.notify(f"{path} is gone: nothing to reload", severity="error")
            elif choice == "reload":
                self._open(str(path))
            elif choice == "overwrite":
                self._confirm_write(profile, path, checked=True)
            elif choice == "saveas":
                self._ask_name(profile, "Save as a new profile named:")

        self.app.push_screen(ChoiceScreen(
            # The sentence first and the path on its own line: a long path then wraps by itself and never
            # splits what the user has to read.
            f"The profile {what} since you opened it (another editor, or another tunetop):\n{path}",
            [("reload", "Reload it, drop my edits", "r"), ("overwrite", "Overwrite it", "o"),
             ("saveas", "Save as new", "a"), ("cancel", "Cancel", "c")]), answer)

    def _confirm_write(self, profile: Profile, target: Path, checked: bool = False) -> None:
        base = self.opened.text
        if target == self.opened.path and not checked and session.changed_on_disk(self.opened):
            self._on_disk_changed(profile, session.changed_on_disk(self.opened))
            return
        _, kept, removed = session.render(profile, target, base)
        exists = target.exists()
        lines = [f"{'Overwrite' if exists else 'Save'} {target}?"]
        if exists and target != self.opened.path:
            lines.append("That profile exists: its contents are replaced by this one.")
        if base and has_comments(base):
            lines.append("Comments and layout are kept: changed values are edited in place." if kept else
                         "Comments will be DROPPED: the file cannot be edited in place (a value spread over "
                         "several lines, or dotted keys), so it is written afresh.")
        if removed:
            lines.append("Left out (they no longer apply, or the form does not know them): " + ", ".join(removed))
        if self.opened.not_kept:
            lines.append("Not kept from the original file: " + "; ".join(self.opened.not_kept))

        def answer(yes: bool | None) -> None:
            if yes:
                self._write(profile, target)

        self.app.push_screen(ConfirmScreen("\n".join(lines), yes="Save"), answer)

    def _write(self, profile: Profile, target: Path) -> None:
        try:
            report = session.save(self.opened, profile, target)
        except OSError as exc:
            self.notify(f"cannot save {target}: {exc}", severity="error", timeout=10)
            return
        self.baseline = self.form.snapshot()
        self._set_picker(str(target))
        self._update_title()
        self._update_notice()
        self.notify(f"saved {target}" + ("; comments were dropped" if report.comments_dropped else ""))

    # -- launching -----------------------------------------------------------------------------------------

    def action_launch(self) -> None:
        profile = self.strict_profile()
        if profile is None:
            return
        try:
            preflight.check(profile)
        except ProfileError as exc:
            first = exc.problems[0]
            self.notify(_text(first, with_where=True), title="cannot launch", severity="error", timeout=10)
            if "." in first.where:
                self.form.focus_field(*first.where.split(".", 1))
            return
        fc = self.estimate.result
        lines = [f"Launch a detached run of {profile.name}?", f"model: {profile.model.name_or_path}",
                 fc.settings.describe() if fc else ""]
        lines.append(self._where_it_runs(profile))
        le = self.estimate.placed
        if le is not None and le.layout is not None:
            lines.append(f"layout: {le.layout.describe()}")
        if le is not None and le.verdicts:
            planned = " (the card picked for planning, not this machine)" if le.planned else ""
            lines.append("estimate per GPU: " + ", ".join(
                f"GPU {i} {c.name} {v}" for i, c, v in zip(le.layout.gpus or range(len(le.cards)), le.cards,
                                                           le.verdicts)) + planned)
        elif fc and fc.available and fc.gpus:
            planned = "" if self.estimate.detected else " (the card picked for planning, not this machine)"
            lines.append("estimate: " + ", ".join(f"{g.card.name} {g.verdict}" for g in fc.gpus) + planned)
        elif fc and not fc.available:
            lines.append(f"estimate unavailable: {fc.problem}")
        if self.dirty:
            lines.append("Unsaved edits are used as they are (the run keeps them in its run.toml).")

        def answer(yes: bool | None) -> None:
            if yes:
                self._launch(profile)

        self.app.push_screen(ConfirmScreen("\n".join(filter(None, lines)), yes="Launch", default_yes=True), answer)

    def _where_it_runs(self, profile: Profile) -> str:
        """What this machine will run: the detected GPUs and the precision the engine resolves for them."""
        from engine.plan.precision import resolve_precision
        cards = self.estimate.detected
        try:
            if cards:
                precision = resolve_precision(profile.training.precision, cards[0].compute_capability, cuda=True)
                return f"this machine: {', '.join(c.name for c in cards)}, {precision}"
            return f"this machine: no NVIDIA GPU, so the CPU in {resolve_precision(profile.training.precision, None)}"
        except Exception as exc:     # PrecisionUnavailable: fp16 asked for on a CPU
            return f"this machine: {exc}"

    def _launch(self, profile: Profile) -> None:
        root = None if profile.output.runs_root else (self.runs_root or getattr(self.app, "runs_root", None))
        try:
            run_dir = launch.launch(profile, root)
        except (TunetopError, OSError) as exc:   # run, profile and notify-config errors alike
            self.notify(error_text(exc), title="cannot launch", severity="error", timeout=10)
            return
        self.notify(f"launched run {run_dir.name}")
        self.dismiss(run_dir)

    # -- the rest ------------------------------------------------------------------------------------------

    def action_pick(self) -> None:
        pick = self.query_one("#rb-pick", Select)
        pick.focus()
        pick.action_show_overlay()

    def action_fit(self) -> None:
        seq = self.current_profile().training.max_seq_len
        self.app.push_screen(CapacityScreen(self.estimate.cards(), seq))

    def action_help(self) -> None:
        self.app.push_screen(BuilderHelp())

    def action_close(self) -> None:
        if not self.dirty:
            self.dismiss(None)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.dismiss(None)

        self.app.push_screen(ConfirmScreen("Leave the run builder? Your unsaved edits are lost.", yes="Leave"),
                             answer)

    @work(thread=True, exclusive=True, group="builder-gpus", exit_on_error=False)
    def _detect_gpus(self) -> None:
        source = self.gpu_source if self.gpu_source is not None else getattr(self.app, "gpu_source", None)
        cards, why = detect(source)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.estimate.set_detected, cards, why)


def _text(p: Problem, with_where: bool = False) -> str:
    text = f"{p.where}: {p.message}" if with_where and p.where else p.message
    return f"{text} — {p.hint}" if p.hint else text


__all__ = ["RunBuilderScreen", "BLANK"]
