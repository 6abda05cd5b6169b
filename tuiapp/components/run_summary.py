"""The figures of the run in focus: status, progress, speeds, batch, memory, warnings and problems."""
from __future__ import annotations

import textwrap
from pathlib import Path

from textual.content import Content
from textual.widget import Widget

from .. import fmt
from ..meters import meter
from ..tracker import RunView


def status_content(status: str) -> Content:
    sym, style = fmt.status_glyph(status)
    return Content.styled(f"{sym} {status}", f"bold {style}")


class RunSummary(Widget):
    DEFAULT_CSS = "RunSummary { height: auto; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.data: RunView | None = None
        self.max_notes = 3
        self._height = -1

    def show(self, view: RunView | None, tick: bool = False) -> None:
        """Redraw for a new view of the run, or once a second for the ticking clocks (tick)."""
        if view is self.data and not tick:
            return
        self.data = view
        lines = self._lines(self.size.width or 40)
        # A layout pass costs far more than a repaint: only when the number of lines changed.
        self.refresh(layout=len(lines) != self._height)
        self._height = len(lines)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> Content:
        return Content("\n").join(self._lines(self.size.width))

    def _lines(self, width: int) -> list[Content]:
        w = max(20, width)
        d = self.data
        if d is None:
            # Wrapped, not cut: this is the first thing a new user reads.
            return _wrap("no run in focus: start one with n (the run builder) or L (a saved profile), or "
                         "`tunetop run demo` in a shell", w, "$text-muted")
        s = d.state
        lines: list[Content] = []
        head = status_content(s.status) + Content(f"  {s.profile or '?'}")
        if d.preview:
            head += Content.styled("  reading…", "$text-muted italic")
        lines.append(head)
        if s.note:
            lines.append(Content.styled(f"⚠ {s.note}", "$warning"))
        for problem in d.problems:
            lines.append(Content.styled(f"⚠ {problem}", "$error"))
        model = Path(s.model).name if s.model and s.model.startswith("/") else (s.model or "?")
        model = model if len(model) <= w // 2 else Path(model).name
        where = " ".join(x for x in (d.device, d.precision) if x)
        # Several processes: the strategy and world size right here, where a short panel (80x24) still shows them.
        layout = f"{s.strategy or 'distributed'}×{s.world_size}" if s.distributed else ""
        lines.append(Content(" · ".join(x for x in (model, s.method, where, layout) if x)))
        if not d.loaded and not d.preview:
            lines.append(Content.styled("loading events…", "$text-muted"))
            return [line.truncate(w, ellipsis=True) for line in lines]
        total = s.total_steps or 0
        frac = s.step / total if total else 0.0
        step_text = f"step {s.step}/{total or '?'}"
        pct = f" {frac * 100:.0f}%" if total else ""
        bar_w = max(4, min(30, w - len(step_text) - len(pct) - 3))
        lines.append(Content.assemble((step_text, "bold"), " ▕", meter(s.step, total or None, bar_w), "▏", pct)
                     if total else Content.styled(step_text, "bold"))
        eta = s.eta_s
        clock = [f"epoch {s.epoch:.2f}" if s.epoch is not None else "epoch -"]
        if s.active:
            clock.append(f"ETA {fmt.duration(eta)}")
        clock.append(f"elapsed {fmt.duration(s.elapsed)}")
        lines.append(Content(" · ".join(clock)))
        loss = Content.assemble("loss ", (fmt.number(s.loss), "bold $primary"))
        if s.eval_loss is not None:
            loss += Content.assemble(" · eval ", (fmt.number(s.eval_loss), "bold $warning"))
        lines.append(loss + Content(f" · lr {fmt.number(s.lr, 2)}"))
        avg_steps, avg_tokens = d.avg_rates
        if s.active:      # a finished run has no speed "now"
            lines.append(Content(f"now {fmt.rate(s.steps_per_s, 'step/s')} · {fmt.rate(s.tokens_per_s, 'tok/s')}"))
        if not (s.active and self.max_notes <= 2):   # compact: while it runs, "now" is the one that matters
            lines.append(Content(f"avg {fmt.rate(avg_steps, 'step/s')} · {fmt.rate(avg_tokens, 'tok/s')}"))
        batch = "batch -"
        if s.micro_batch is not None and s.grad_accum is not None:
            eff = d.effective_batch or s.micro_batch * s.grad_accum
            batch = f"batch {s.micro_batch}×{s.grad_accum} = {eff}"
        fullest = s.fullest_rank if s.distributed else None
        if fullest is not None:      # the fullest GPU is the one that runs out first
            rank, size, kind = fullest
            batch += f" · {'peak' if kind == 'cuda' else 'RSS'} {fmt.size(size)} rank {rank}"
        elif d.cuda_peak is not None:
            batch += f" · VRAM peak {fmt.size(d.cuda_peak)}"
        elif d.rss is not None:
            batch += f" · RSS {fmt.size(d.rss)}"
        lines.append(Content(batch))
        lines += _layout_lines(s, w, compact=self.max_notes <= 2)
        backoffs = s.backoffs
        notes = list(d.notes)[-self.max_notes:]
        if backoffs:
            lines.append(Content.styled(f"⚠ {backoffs} OOM backoff(s): effective batch kept", "$warning"))
        out = [line.truncate(w, ellipsis=True) for line in lines]
        for level, message in reversed(notes):
            # Notes wrap: the end of a backoff line is what changed, the end of an error is the hint.
            out += _wrap(("✗ " if level == "error" else "⚠ ") + message.replace("\n", " "), w,
                         "$error" if level == "error" else "$warning", indent=2)
        return out


def _layout_lines(s, width: int, compact: bool) -> list[Content]:
    """Several processes (or GPUs): the layout, why that strategy, and the fullest rank's memory. Nothing for
    one process, so single-process runs look as they always did."""
    if not s.distributed:
        return []
    nodes = f" · {s.nodes} nodes" if s.nodes > 1 else ""
    head = Content.assemble((s.strategy or "distributed", "bold"), f" · world size {s.world_size}{nodes}")
    out = []
    why = s.strategy_reason
    if compact:     # the model line says strategy×world already; one line more at most
        return [(head + Content.styled(f" · {why}" if why else "", "$text-muted")).truncate(width, ellipsis=True)]
    out.append(head.truncate(width, ellipsis=True))
    if why:
        out += _wrap(f"why: {why}", width, "$text-muted", indent=2)
    fullest = s.fullest_rank
    if fullest is not None:
        rank, size, kind = fullest
        what = "GPU peak" if kind == "cuda" else "RSS"
        sizes = [peak if kind == "cuda" else rss for _, peak, rss in s.rank_memory]
        sizes = [x for x in sizes if x is not None]
        spread = f" (lowest {fmt.size(min(sizes))})" if len(sizes) > 1 and min(sizes) != size else ""
        missing = f" · {len(sizes)} of {s.world_size} ranks reported" if len(sizes) < s.world_size else ""
        out.append(Content.assemble(f"fullest rank {rank}: {what} ", (fmt.size(size), "bold"), spread, missing)
                   .truncate(width, ellipsis=True))
    return out


def _wrap(text: str, width: int, style: str, indent: int = 0) -> list[Content]:
    """Word-wrapped lines (continuations indented), so nothing is cut with an ellipsis."""
    lines = textwrap.wrap(text, width, subsequent_indent=" " * indent, break_long_words=True) or [""]
    return [Content.styled(line, style) for line in lines]
