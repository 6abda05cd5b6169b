"""The builder's VRAM panel: the estimate of the profile in the form, its breakdown, a verdict per GPU and
suggestions, recomputed as the form changes (engine.plan: the same figures as `tunetop estimate`).

GPUs: the detected ones, or a common card picked from the list at the top of the panel (also used to plan
for another machine when GPUs are detected). The estimate is pure arithmetic on config.json (a few ms), so
it runs on the UI thread; only GPU detection (NVML, about a second) runs in a thread.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Select, Static

from engine.distributed.layout_estimate import LayoutEstimate, layout_estimate
from engine.plan import FitCheck, GpuCard, check_profile, common_cards, count_text, gib
from engine.plan.report import label_of, rule_text
from engine.profile import Profile

from .form import ChoiceField
from .layout_picker import LayoutPicker, layout_lines

DETECTED = "detected"
DEFAULT_CARD = "RTX 4090 24 GB"
VERDICT_STYLE = {"fits": "bold $success", "tight": "bold $warning", "does not fit": "bold $error"}



class EstimatePanel(VerticalScroll):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.detected: list[GpuCard] = []
        self.detect_note: str | None = "looking for GPUs…"
        self.result: FitCheck | None = None
        self.placed: LayoutEstimate | None = None   # the [distributed] layout's per-GPU figures (None: one device)
        self._profile: Profile | None = None

    def compose(self) -> ComposeResult:
        yield ChoiceField(self._options(), value=DEFAULT_CARD, allow_blank=False, id="gpu-pick", compact=True)
        yield LayoutPicker(id="layout-picker")
        yield Static("", id="estimate-body")

    def _options(self) -> list[tuple[str, str]]:
        opts = [(f"detected: {', '.join(c.name for c in self.detected)}", DETECTED)] if self.detected else []
        return opts + [(c.name, c.name) for c in common_cards()]

    def set_detected(self, cards: list[GpuCard], why: str | None) -> None:
        self.detected, self.detect_note = cards, why
        pick = self.query_one("#gpu-pick", Select)
        pick.set_options(self._options())
        pick.value = DETECTED if cards else DEFAULT_CARD
        self.query_one(LayoutPicker).set_cards(cards)
        self.refresh_estimate()

    def cards(self) -> list[GpuCard]:
        choice = self.query_one("#gpu-pick", Select).value
        if choice == DETECTED and self.detected:
            return self.detected
        return [c for c in common_cards() if c.name == choice] or common_cards()[:1]

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "gpu-pick":
            return
        event.stop()
        self.refresh_estimate()

    def show(self, profile: Profile) -> None:
        self._profile = profile
        self.query_one(LayoutPicker).sync(profile.distributed.gpus, profile.distributed.strategy)
        self.refresh_estimate()

    def wait_for(self, problem: str) -> None:
        """A value the estimate needs is refused in the form: say so, rather than estimate with a default."""
        self._profile = self.result = self.placed = None
        self._update(Content.assemble(("the estimate waits for ", "bold $warning"), problem))

    def refresh_estimate(self) -> None:
        if self._profile is None:
            return
        try:
            self.result = fc = check_profile(self._profile, self.cards())
            detected = self.query_one("#gpu-pick", Select).value == DETECTED and bool(self.detected)
            self.placed = layout_estimate(self._profile, fc.estimate, fc.model.config, self.cards(),
                                          detected=detected, precision=fc.precision,
                                          double_quant=fc.settings.double_quant)
        except Exception as exc:   # the panel must never take the form down
            self.result = self.placed = None
            self._update(Content(f"estimate failed: {exc}"))
            return
        self._update(render(self.result, self._profile, self._gpu_line(), self.placed))

    def _update(self, content: Content) -> None:
        key = (content.plain, tuple(content.spans))
        if key != getattr(self, "_shown", None):   # unchanged figures: no repaint, no re-layout
            self._shown = key
            self.query_one("#estimate-body", Static).update(content)

    def _gpu_line(self) -> str | None:
        if self.detected or not self.detect_note:
            return None
        picked = self.query_one("#gpu-pick", Select).value
        return f"{self.detect_note}: estimating for {picked} (the card picked above)"


def render(fc: FitCheck, profile: Profile, gpu_note: str | None, layout: LayoutEstimate | None = None) -> Content:
    parts: list[Content] = []
    line = parts.append
    # Several GPUs (or one picked by index): the chosen layout's per-GPU figures first; the lines after it
    # are the single-GPU estimate each strategy starts from.
    if layout is not None:
        parts += layout_lines(layout)
        line(Content.styled("one process on one GPU:", "$text-muted"))
    # The verdict per card first: what the panel is for, visible even when the panel is short (80x24).
    for g in fc.gpus:
        bar = _bar(g.share)
        extra = f" · micro-batch up to {g.auto_micro_batch}" if g.auto_micro_batch is not None else ""
        precision = f" · {g.precision}" if g.precision != fc.precision else ""
        line(Content.assemble(f"{g.card.name} ", (f"{gib(g.card.total_bytes)} ", "$text-muted"), bar,
                              f" {g.share:.0%} ", (g.verdict, VERDICT_STYLE[g.verdict]),
                              (extra + precision, "$text-muted")))
    if gpu_note:
        line(Content.styled(gpu_note, "$text-muted"))
    origin = f"  [{fc.model.origin}]" if fc.model.origin else ""
    line(Content.assemble(("model ", "$text-muted"), profile.model.name_or_path or "(none)", (origin, "$text-muted")))
    line(Content.styled(fc.settings.describe(), "$text-muted"))
    if not fc.available:
        line(Content.assemble(("estimate unavailable: ", "bold $warning"), fc.problem))
        if fc.hint:
            line(Content.styled(f"hint: {fc.hint}", "$text-muted"))
        line(Content.styled("launching is still allowed", "$text-muted"))
        return Content("\n").join(parts)
    e = fc.estimate
    line(Content.styled(f"{count_text(e.params)} parameters, {count_text(e.trainable_params)} trained · "
                        f"{fc.precision}", "$text-muted"))
    width = 30
    for name, value in e.breakdown():
        line(Content.assemble(f"{label_of(name):<{width}}", (f"{gib(value):>10}", "")))
    line(Content.assemble((f"{'total':<{width}}", "bold"), (f"{gib(e.total):>10}", "bold")))
    if e.paged_out:
        line(Content.styled(f"{'worst case (paged state on the GPU)':<{width}}{gib(e.worst_case):>10}", "$text-muted"))
    if fc.suggestions:
        line(Content.styled(f"to fit {fc.target.name}, keeping the effective batch:", "bold"))
        for s in fc.suggestions:
            figure = gib(s.total) + (f" ({s.verdict})" if s.verdict else "")
            line(Content.assemble("• ", s.change, ": ", (figure, VERDICT_STYLE.get(s.verdict, ""))))
    if fc.note:
        line(Content.styled(fc.note, "$warning"))
    for note in e.notes:
        line(Content.styled(f"note: {note}", "$text-muted"))
    rule = rule_text(e)
    if rule:
        line(Content.styled(rule, "$text-muted italic"))
    return Content("\n").join(parts)


def _bar(share: float, width: int = 10) -> Content:
    filled = min(width, round(share * width))
    style = "$success" if share <= 0.85 else "$warning" if share <= 1 else "$error"
    return Content.assemble(("█" * filled, style), ("░" * (width - filled), "$text-muted"))
