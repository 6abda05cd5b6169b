"""The builder's modal dialogs: a name for "save as", a choice among several answers (the file changed on
disk), "what can I train here?", and the builder's help. Keyboard first: every answer has a key."""
from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from engine import paths
from engine.plan import GpuCard
from engine.plan.capacity import capacity, default_settings
from engine.plan.report import billions, gib

from ..components.help_screen import ROWS_CSS, key_rows, key_width
from ..components.ordered_input import OrderedInput
from ..keys import builder_rows

from .session import user_path, valid_name

_BOX = """
{cls} {{ align: center middle; }}
{cls} > Vertical {{ width: 76; max-width: 96%; height: auto; max-height: 92%; border: thick $primary;
    background: $surface; padding: 1 2; }}
{cls} .dialog-text {{ margin-bottom: 1; }}
{cls} .dialog-error {{ color: $error; height: auto; }}
{cls} Horizontal {{ height: auto; align-horizontal: right; }}
{cls} Button {{ margin-left: 1; min-width: 10; }}
{cls} VerticalScroll {{ height: auto; max-height: 40; }}
"""


class NameScreen(ModalScreen[str | None]):
    """Ask for a new profile's name; enter saves, escape cancels. Dismisses with the name."""
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", show=True)]
    DEFAULT_CSS = _BOX.format(cls="NameScreen")

    def __init__(self, question: str, suggestion: str = ""):
        super().__init__()
        self.question, self.suggestion = question, suggestion

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="dialog-text", markup=False)
            yield OrderedInput(self.suggestion, id="name", placeholder="profile name")
            yield Static("", id="where", classes="dialog-text", markup=False)
            yield Static("", classes="dialog-error", id="name-error", markup=False)

    def on_mount(self) -> None:
        self._show(self.suggestion)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.value.strip())

    def _show(self, name: str) -> None:
        problem = valid_name(name)
        self.query_one("#name-error", Static).update(problem or "")
        where = ""
        if not problem:
            target = user_path(name)
            where = f"saved as {target}"
            if target.exists():
                where += " (exists: you will be asked)"
            elif (paths.BUNDLED_PROFILES / target.name).exists():
                where += " (a bundled profile has this name: yours will hide it)"
        self.query_one("#where", Static).update(where)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if valid_name(name) is None:
            self.dismiss(name)


class ChoiceScreen(ModalScreen[str | None]):
    """A question with several answers, each a button with its own key. Dismisses with the answer's id."""
    DEFAULT_CSS = _BOX.format(cls="ChoiceScreen")

    def __init__(self, question: str, answers: list[tuple[str, str, str]]):
        """answers: (id, label, key)."""
        super().__init__()
        self.question, self.answers = question, answers

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="dialog-text", markup=False)
            with Horizontal():
                for answer, label, key in self.answers:
                    yield Button(f"{label} [{key}]", id=f"answer-{answer}")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_key(self, event) -> None:
        for answer, _, key in self.answers:
            if event.key == key:
                event.stop()
                self.dismiss(answer)
                return
        if event.key == "escape":
            event.stop()
            self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id.removeprefix("answer-"))


class CapacityScreen(ModalScreen[None]):
    """"What can I train here?": the largest common model per method for each card (engine.plan.capacity)."""
    BINDINGS = [Binding("escape,q", "dismiss", "Close", show=True)]
    DEFAULT_CSS = _BOX.format(cls="CapacityScreen").replace("width: 76", "width: 100")

    def __init__(self, cards: list[GpuCard], seq_len: int, micro_batch: int = 1):
        super().__init__()
        self.cards, self.seq_len, self.micro_batch = cards, seq_len, micro_batch

    def compose(self) -> ComposeResult:
        s = default_settings(self.seq_len, self.micro_batch)
        lines = [Content.styled(f"largest common model per method at seq {self.seq_len}, micro-batch "
                                f"{self.micro_batch} (checkpointing on, {s.optimizer}, LoRA r={s.lora_r})",
                                "$text-muted")]
        for card in self.cards:
            lines.append(Content.styled(f"\n{card.name} · {gib(card.total_bytes)}"
                                        f"{' · detected' if card.detected else ''}", "bold"))
            for c in capacity(card.total_bytes, self.seq_len, self.micro_batch):
                best = (Content.assemble((c.fits.model_id, "bold $success"),
                                         f" ({billions(c.fits.params)}, {gib(c.fits.total)})")
                        if c.fits else Content.styled("nothing in the table fits", "$error"))
                more = c.tight or c.next_up
                tail = Content.styled(f"  next: {more.model_id} {gib(more.total)} {more.verdict}", "$text-muted") \
                    if more else Content("")
                lines.append(Content.assemble(f"  {c.method:<6} ", best, tail))
        with Vertical():
            with VerticalScroll():
                yield Static(Content("\n").join(lines))
            yield Static(Content.styled("escape closes · `tunetop fit --gpu NAME --seq N` prints this in a terminal",
                                        "$text-muted"))


HELP = """\
Values are checked as you type by the same validator the engine uses; the message shows under the field.
Fields that do not apply to the chosen method are hidden, and are not written.

Saving keeps your comments: the file is edited line by line (changed values replaced in place, keys that
no longer apply removed, new non-default keys added at the end of their table). If that cannot be done
safely (a value spread over several lines, dotted keys), the dialog says comments will be dropped before
anything is written. Keys the form does not know (or values it refuses) are listed when the profile is
opened and again before saving: they are not written back.

Bundled profiles are read-only: saving one asks for a new name. If the file changed on disk since it was
opened, saving asks whether to reload it, overwrite it, or save as a new profile. Saved profiles hold
absolute paths for the model and the data.
"""


class BuilderHelp(ModalScreen[None]):
    """The builder's keys (tuiapp/keys.py: the same bindings its footer shows), then what saving does."""
    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss", "Close", show=True)]
    DEFAULT_CSS = (_BOX.format(cls="BuilderHelp").replace("width: 76", "width: 110")
                   + ROWS_CSS.format(cls="BuilderHelp", w=key_width(builder_rows())))

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll():
                yield Static("run builder keys", classes="dialog-text")
                yield from key_rows(builder_rows())
                # One line per paragraph: the dialog wraps them at its width (80 columns or 200).
                yield Static("\n" + re.sub(r"(?<!\n)\n(?!\n)", " ", HELP), markup=False)
