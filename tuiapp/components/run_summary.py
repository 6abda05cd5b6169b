"""The figures of the run in focus: status, progress, speeds, batch, memory, warnings and problems."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from textual.content import Content
from textual.widget import Widget

from .. import fmt
from ..meters import meter
from ..tracker import RunData

STATUS = {  # symbol (readable without colour) and theme colour
    "running": ("▶", "$success"), "starting": ("…", "$accent"), "completed": ("✓", "$primary"),
    "stopped": ("■", "$warning"), "failed": ("✗", "$error"), "interrupted": ("!", "$error"),
    "failed to start": ("✗", "$error"),
}


def status_content(status: str) -> Content:
    sym, style = STATUS.get(status, ("?", "$text-muted"))
    return Content.styled(f"{sym} {status}", f"bold {style}")


class RunSummary(Widget):
    DEFAULT_CSS = "RunSummary { height: auto; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.data: RunData | None = None
        self.has_toml = True
        self.max_notes = 3
        self.data_lock = nullcontext()
        self._last: tuple | None = None
        self._height = -1

    def show(self, data: RunData | None, has_toml: bool = True, key: tuple | None = None, lock=None) -> None:
        """Redraw when the data changed (key) or once a second for the ticking clocks (key None)."""
        if key is not None and key == self._last and data is self.data:
            return
        self._last = key
        self.data, self.has_toml = data, has_toml
        self.data_lock = lock or nullcontext()
        with self.data_lock:
            lines = self._lines(self.size.width or 40)
        # A layout pass costs far more than a repaint: only when the number of lines changed.
        self.refresh(layout=len(lines) != self._height)
        self._height = len(lines)

    def get_content_height(self, container, viewport, width: int) -> int:
        with self.data_lock:   # the worker thread folds new events into the same objects
            return len(self._lines(width))

    def render(self) -> Content:
        with self.data_lock:
            return Content("\n").join(self._lines(self.size.width))

    def _lines(self, width: int) -> list[Content]:
        w = max(20, width)
        d = self.data
        if d is None:
            return [Content.styled("no run in focus: start one with n (builder) or L (a profile), or "
                                   "`tunetop run demo` in a shell", "$text-muted")]
        s = d.state
        lines: list[Content] = []
        head = status_content(s.status) + Content(f"  {s.profile or '?'}")
        if d.preview:
            head += Content.styled("  reading…", "$text-muted italic")
        lines.append(head)
        for problem in d.problems(self.has_toml):
            lines.append(Content.styled(f"⚠ {problem}", "$error"))
        model = Path(s.model).name if s.model and s.model.startswith("/") else (s.model or "?")
        model = model if len(model) <= w // 2 else Path(model).name
        where = " ".join(x for x in (d.device, d.precision) if x)
        lines.append(Content(" · ".join(x for x in (model, s.method, where) if x)))
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
        avg_steps, avg_tokens = d.avg_rates()
        lines.append(Content(f"now {fmt.rate(s.steps_per_s, 'step/s')} · {fmt.rate(s.tokens_per_s, 'tok/s')}"))
        lines.append(Content(f"avg {fmt.rate(avg_steps, 'step/s')} · {fmt.rate(avg_tokens, 'tok/s')}"))
        batch = "batch -"
        if s.micro_batch is not None and s.grad_accum is not None:
            eff = d.effective_batch or s.micro_batch * s.grad_accum
            batch = f"batch {s.micro_batch}×{s.grad_accum} = {eff}"
        if d.cuda_peak is not None:
            batch += f" · VRAM peak {fmt.size(d.cuda_peak)}"
        elif d.rss is not None:
            batch += f" · RSS {fmt.size(d.rss)}"
        lines.append(Content(batch))
        backoffs = s.backoffs
        notes = list(d.notes)[-self.max_notes:]
        if backoffs:
            lines.append(Content.styled(f"⚠ {backoffs} OOM backoff(s): effective batch kept", "$warning"))
        for level, message in reversed(notes):
            lines.append(Content.styled(("✗ " if level == "error" else "⚠ ") + message.replace("\n", " "),
                                        "$error" if level == "error" else "$warning"))
        return [line.truncate(w, ellipsis=True) for line in lines]


