"""The builder's layout picker, at the top of the VRAM panel: which detected GPUs to train on and the strategy,
and the per-GPU estimate with a verdict for that layout (engine/distributed/layout_estimate.py).

The picker edits the form's own [distributed] fields (gpus, strategy, and processes back to "auto" when
the GPU list decides it): it posts `Picked`, the screen puts the values in the form, and the form's
validation, estimate and saving follow as for typed values. When the form changes (typed values, another
profile opened), `sync` shows them here without posting anything back.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.widgets import Checkbox, Label

from engine.profile.distributed_rules import STRATEGIES, parse_gpus
from engine.distributed.layout_estimate import LayoutEstimate
from engine.plan import GpuCard, gib

from ..components.ordered_input import KeysInOrder
from .form import ChoiceField

VERDICT_STYLE = {"fits": "bold $success", "tight": "bold $warning", "does not fit": "bold $error"}


def gpus_text(selected: list[int]) -> str:
    return ",".join(str(i) for i in sorted(selected))


class LayoutPicker(Horizontal):
    """One line: a checkbox per detected GPU (by index: their names are in the card list above and in the
    per-GPU lines below) and the strategy. Tab moves between them, space ticks a GPU."""

    class Picked(Message):
        """The user chose GPUs or a strategy here: the form's [distributed] values to set."""
        def __init__(self, values: dict):
            super().__init__()
            self.values = values

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.count = 0
        self.gpus = ""            # the form's values, as last synced
        self.strategy = "auto"

    def compose(self) -> ComposeResult:
        yield Label("GPUs", id="layout-gpus-label")
        yield Horizontal(id="layout-gpus")
        yield Label("strategy", id="layout-strategy-label")
        yield ChoiceField([(s, s) for s in ("auto", *STRATEGIES)], value="auto", allow_blank=False,
                          id="layout-strategy", compact=True)

    def boxes(self) -> list[Checkbox]:
        return list(self.query_one("#layout-gpus", Horizontal).query(Checkbox))

    def set_cards(self, cards: list[GpuCard]) -> None:
        """The detected GPUs, a box each (none detected: no boxes; the form's fields still plan)."""
        self.count = len(cards)
        row = self.query_one("#layout-gpus", Horizontal)
        row.remove_children()
        chosen = self._chosen(self.gpus)
        row.mount_all([GpuBox(str(i), i in chosen, id=f"layout-gpu-{i}", compact=True,
                              tooltip=f"GPU {i}: {c.name} ({gib(c.total_bytes)})") for i, c in enumerate(cards)])
        for widget in (row, self.query_one("#layout-gpus-label")):
            widget.display = bool(cards)

    def _chosen(self, text: str) -> set[int]:
        gpus, _ = parse_gpus(text)
        if gpus == "all":
            return set(range(self.count))
        return set(gpus) if isinstance(gpus, list) else set()

    def selected(self) -> set[int]:
        return {int(b.label.plain) for b in self.boxes() if b.value}

    def sync(self, gpus: str, strategy: str) -> None:
        """Show the form's values (no message back: they are the form's already)."""
        self.gpus, self.strategy = gpus, strategy
        pick = self.query_one("#layout-strategy", ChoiceField)
        if strategy in {v for _, v in pick._options} and pick.value != strategy:
            pick.value = strategy
        chosen = self._chosen(gpus)
        for box in self.boxes():
            want = int(box.label.plain) in chosen
            if box.value != want:
                with box.prevent(Checkbox.Changed):
                    box.value = want

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        selected = self.selected()
        if selected == self._chosen(self.gpus):
            return          # what the form says already (a sync, or "all" shown as every box)
        values: dict = {"gpus": gpus_text(list(selected))}
        values["processes"] = "auto"   # one process per chosen GPU (a count typed before would contradict it)
        self.gpus = values["gpus"]
        self.post_message(self.Picked(values))

    def on_select_changed(self, event) -> None:
        if event.select.id != "layout-strategy":
            return
        event.stop()
        value = str(event.select.value)
        if value != self.strategy:
            self.strategy = value
            self.post_message(self.Picked({"strategy": value}))


class GpuBox(KeysInOrder, Checkbox):
    """A GPU's box: keys apply in typing order, as in the form."""


def layout_lines(le: LayoutEstimate) -> list[Content]:
    """The chosen layout's figures: the verdict and what runs where first (visible in a short panel at
    80x24), then the peak on each GPU with its verdict, then why that strategy."""
    out: list[Content] = []
    if le.layout is None:
        out.append(Content.assemble(("layout: ", "bold $error"), le.problem))
        if le.hint:
            out.append(Content.styled(f"hint: {le.hint}", "$text-muted"))
        return out
    lay = le.layout
    verdict = le.verdict
    head = Content.assemble((f"{verdict} ", VERDICT_STYLE[verdict]) if verdict else "", ("layout ", "bold"),
                            lay.describe())
    out.append(head)
    if le.problem:
        out.append(Content.styled(le.problem, "$warning"))
    if lay.device != "cuda":
        out.append(Content.styled("CPU processes: no GPU memory to estimate", "$text-muted"))
    names = [str(i) for i in lay.gpus] or ["0"] * len(le.cards)
    for name, card, size, verdict in zip(names, le.cards, le.figures, le.verdicts):
        share = size / card.total_bytes if card.total_bytes else 0.0
        out.append(Content.assemble(f"GPU {name} ", (f"{gib(size)}", "bold"), f" of {gib(card.total_bytes)} ",
                                    (f"{share:.0%} ", "$text-muted"), (verdict, VERDICT_STYLE[verdict])))
    if le.planned and le.cards:
        out.append(Content.styled("(planned for the card picked above, not this machine)", "$text-muted"))
    if le.placement is not None and le.placement.layers_per_gpu:
        out.append(Content.styled("decoder layers per GPU: " + ", ".join(map(str, le.placement.layers_per_gpu)),
                                  "$text-muted"))
    if lay.reason and lay.strategy != "single":
        out.append(Content.styled(f"why: {lay.reason}", "$text-muted"))
    return out
