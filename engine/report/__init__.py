"""Reports and comparisons of runs, from their run directories alone (torch-free, textual-free).

    summarize(run_dir)            RunSummary: outcome, curves, backoffs, memory, checkpoints, outputs
    render.text(summary)          the terminal report (`tunetop report RUN`)
    write_report(run_dir, out, fmt)  html (self-contained) or md (+ SVG files); the end notification
                                  attaches the html one
    compare.load / compare.text   several runs side by side (`tunetop compare`, the dashboard's `c`)
"""
from __future__ import annotations

from . import compare, render
from .render import write_report
from .summary import RunSummary, summarize

__all__ = ["RunSummary", "summarize", "write_report", "render", "compare"]
