"""The GPUs panel: one block per detected GPU (in CUDA order), or why there is none.

Each block redraws only when its own figures change. Width decides how much fits on a line; `proc_lines`
(set by the layout: fewer in a compact terminal) caps the lines of processes under each GPU.
"""
from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from engine.telemetry import GpuInfo, ProcInfo

from ..fmt import NA, gib, mem_pair
from ..meters import meter, pct


class GpuBlock(Widget):
    DEFAULT_CSS = "GpuBlock { height: auto; }"

    def __init__(self, info: GpuInfo, **kwargs):
        super().__init__(**kwargs)
        self.info = info
        self.procs: list[ProcInfo] = []
        self.proc_lines = 1

    def set(self, info: GpuInfo, procs: list[ProcInfo], proc_lines: int) -> None:
        if (info, procs, proc_lines) != (self.info, self.procs, self.proc_lines):
            before = len(self._lines(self.size.width))
            self.info, self.procs, self.proc_lines = info, procs, proc_lines
            self.refresh(layout=len(self._lines(self.size.width)) != before)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> Content:
        return Content("\n").join(self._lines(self.size.width))

    def _lines(self, width: int) -> list[Content]:
        g, w = self.info, max(20, width)
        name = g.name or NA
        head = f"{g.index}"
        if g.nvml_index is not None and g.nvml_index != g.index:
            head += f" (nvml {g.nvml_index})"
        if g.error:
            return [Content.assemble((head + (f" {g.name}" if g.name else "") + "  ", "bold"),
                                     (g.error, "$error")).truncate(w, ellipsis=True)]
        power = NA if g.power is None else f"{g.power:.0f}"
        limit = NA if g.power_limit is None else f"{g.power_limit:.0f}"
        temp = NA if g.temp is None else f"{g.temp}°C"
        right = f"{pct(g.util)} {temp} {power}/{limit} W"
        left = f"{head} {name}"
        room = w - len(right) - 1
        if len(left) > room:
            left = left[: max(1, room - 1)] + "…"
        line1 = Content.assemble((left, "bold"), " " * max(1, w - len(left) - len(right)), right)
        mem = mem_pair(g.mem_used, g.mem_total)
        bar = meter(g.mem_used, g.mem_total, max(4, w - len(mem) - 6))
        line2 = Content.assemble("  ▕", bar, "▏ ", mem)
        lines = [line1.truncate(w), line2.truncate(w)]
        if self.procs and self.proc_lines:
            lines += self._proc_lines(w)
        return lines

    def _proc_lines(self, w: int) -> list[Content]:
        items = []
        for p in self.procs:
            who = f"tunetop {p.run_id}" if p.run_id else (p.name or "?")
            style = "$accent bold" if p.run_id else ""
            mem = NA if p.mem_used is None else f"{gib(p.mem_used)} GiB"
            items.append(Content.assemble((f"{p.pid} ", "$text-muted"), (who, style), f" {mem}"))
        lines, current = [], Content("  ↳ ")
        for item in items:
            sep = Content(" · ") if current.cell_length > 4 else Content("")
            if current.cell_length + sep.cell_length + item.cell_length > w and current.cell_length > 4:
                lines.append(current)
                current = Content("    ")
                sep = Content("")
            current = current + sep + item
        lines.append(current)
        if len(lines) > self.proc_lines:
            lines = lines[: self.proc_lines]
            lines[-1] = lines[-1].truncate(w - 1) + Content("…")
        return [line.truncate(w, ellipsis=True) for line in lines]


class GpuPanel(VerticalScroll):
    """Blocks are added and removed only when the number of GPUs changes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.message = Static("sampling GPUs…", classes="gpu-message")
        self.proc_lines = 3

    def compose(self):
        yield self.message

    def set_message(self, text: str | None, error: bool = False) -> None:
        if (text, error) == getattr(self, "_message", None):
            return
        self._message = (text, error)
        self.message.display = bool(text)
        if text:
            self.message.update(Content.styled(text, "$error" if error else "$text-muted"))

    def show(self, devices: list[GpuInfo], procs: dict[int, list[ProcInfo]], error: str | None,
             warning: str | None = None) -> None:
        if error:
            self.set_message(error, error=False)
            self._resize(0)
            return
        self.set_message(warning, error=True)
        self._resize(len(devices))
        for block, info in zip(self.query(GpuBlock), devices):
            block.set(info, procs.get(info.index, []), self.proc_lines)

    def _resize(self, n: int) -> None:
        blocks = list(self.query(GpuBlock))
        for block in blocks[n:]:
            block.remove()
        if n > len(blocks):
            self.mount_all([GpuBlock(GpuInfo(i)) for i in range(len(blocks), n)])
