"""The host panel: CPU, RAM, swap and the free disk where the runs live."""
from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from engine.telemetry import HostInfo

from ..fmt import NA, gib, size
from ..meters import level, meter, pct

LABEL = 5


class HostPanel(Widget):
    DEFAULT_CSS = "HostPanel { height: auto; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.info: HostInfo | None = None

    def show(self, info: HostInfo) -> None:
        # Repaint only when a figure changes at the resolution shown (RAM moves by bytes all the time).
        if _shown(info) != _shown(self.info):
            self.refresh()     # always 4 lines: a repaint, no layout pass
        self.info = info

    def get_content_height(self, container, viewport, width: int) -> int:
        return 4

    def render(self) -> Content:
        h = self.info
        w = max(16, self.size.width)
        if h is None:
            return Content.styled("sampling…", "$text-muted")
        cores = f" ×{h.cpu_count}" if h.cpu_count else ""
        load = f" load {h.load1:.1f}" if h.load1 is not None and w >= 34 else ""
        cpu_text = f" {pct(h.cpu_percent)}{cores}{load}"
        ram_text = f" {gib(h.ram_used)}/{gib(h.ram_total)} GiB"
        swap_text = f" {gib(h.swap_used)}/{gib(h.swap_total)} GiB" if h.swap_total else " none"
        bar_w = max(3, w - LABEL - max(len(cpu_text), len(ram_text), len(swap_text)) - 2)
        lines = [
            self._line("CPU", h.cpu_percent, 100.0, bar_w, cpu_text),
            self._line("RAM", h.ram_used, h.ram_total, bar_w, ram_text),
            self._line("swap", h.swap_used, h.swap_total, bar_w, swap_text),
        ]
        if h.disk_free is None:
            disk = Content.assemble(("disk".ljust(LABEL), "bold"), f"{NA} ({h.disk_path or 'no runs folder'})")
        else:
            used_frac = 1 - h.disk_free / h.disk_total if h.disk_total else None
            disk = Content.assemble(("disk".ljust(LABEL), "bold"), (size(h.disk_free), level(used_frac)), " free")
            if h.disk_total and w >= 30:
                disk += Content(f" of {size(h.disk_total)}")
        lines.append(disk)
        return Content("\n").join(line.truncate(w, ellipsis=True) for line in lines)

    @staticmethod
    def _line(label: str, used, total, bar_w: int, text: str) -> Content:
        return Content.assemble((label.ljust(LABEL), "bold"), "▕", meter(used, total, bar_w), "▏", text)


def _shown(h: HostInfo | None) -> tuple | None:
    if h is None:
        return None
    r = lambda v, unit: None if v is None else round(v / unit)   # noqa: E731
    return (r(h.cpu_percent, 1), r(h.load1, 0.1), r(h.ram_used, 1 << 26), r(h.swap_used, 1 << 26),
            r(h.disk_free, 1 << 26), h.ram_total, h.swap_total, h.disk_total, h.disk_path, h.cpu_count)
