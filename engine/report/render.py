"""The overnight report of one run, as terminal text, Markdown (with SVG files beside it) or one
self-contained HTML file (the charts inline as SVG: it opens anywhere, attaches to an e-mail)."""
from __future__ import annotations

import html
import math
import time
from pathlib import Path

from ..errors import TunetopError
from ..units import duration, size
from . import charts
from .summary import RunSummary, summarize


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.{digits}g}"


def commands(s: RunSummary) -> list[tuple[str, str]]:
    """The exact commands that make sense next, with what each does."""
    out = []
    has_ckpt = any(exists for _, _, exists, _ in s.checkpoints)
    if s.status in ("stopped", "failed", "interrupted") and has_ckpt:
        out.append((f"tunetop resume {s.run_id}", "continue from the last checkpoint"))
    if s.status == "completed" and s.method in ("lora", "qlora") and not (s.path / "merged").is_dir():
        out.append((f"tunetop merge {s.run_id}", "fold the adapter into the base model"))
    out.append((f"tunetop compare {s.run_id} OTHER_RUN", "overlay its curves with another run's"))
    if len([c for c in s.checkpoints if c[2]]) > 1:
        out.append((f"tunetop prune {s.run_id}", "delete all but the last checkpoint"))
    return out


def facts(s: RunSummary) -> list[tuple[str, str]]:
    """(label, value) rows shared by every format."""
    wall = s.wall_s
    tps = s.mean_tokens_per_s
    rows = [("outcome", s.status + (" (NaN/inf loss)" if s.nan and s.status == "failed" else "")),
            ("profile", s.profile or "-"), ("model", s.model or "-"), ("method", s.method or "-"),
            ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started)) if s.started else "-"),
            ("wall time", duration(wall)),
            ("steps", f"{s.step}/{s.total_steps or '?'}"),
            ("tokens seen", f"{s.tokens:,}" if s.tokens is not None else "-"),
            ("throughput", f"{tps:,.0f} tokens/s" if tps else "-"),
            ("final loss", _fmt(s.final_loss)),
            ("eval loss", _fmt(s.final_eval_loss) + (f" (best {_fmt(s.best_eval.value)} at step {s.best_eval.step})"
                                                      if s.best_eval and len(s.eval_loss) > 1 else "")),
            ("learning rate", f"peak {_fmt(max(p.value for p in s.lr))}, last {_fmt(s.lr[-1].value)}" if s.lr else "-"),
            ("grad norm", f"last {_fmt(s.grad_norm[-1].value)}, max {_fmt(max(p.value for p in s.grad_norm))}"
             if s.grad_norm else "-"),
            ("batch", f"micro-batch {s.micro_batch or '?'} x accumulation {s.grad_accum or '?'}"
             + (f" = {s.effective_batch}" if s.effective_batch else "")),
            ("device", ", ".join(s.devices) or s.device or "-")]
    if s.peak_by_rank:
        rows.append(("peak GPU memory", ", ".join(f"rank {r}: {size(b)}" for r, b in sorted(s.peak_by_rank.items()))))
    elif s.peak_cuda:
        gpu = s.devices[0] if s.devices else "GPU 0"
        rows.append(("peak GPU memory", f"{size(s.peak_cuda)} ({gpu})"))
    if s.peak_rss:
        rows.append(("peak host RSS", size(s.peak_rss)))
    rows.append(("backoffs", str(len(s.backoffs))))
    if s.segments > 1:
        rows.append(("segments", f"{s.segments} (resumed or relaunched {s.segments - 1}x)"))
    rows.append(("disk use", size(s.disk_bytes)))
    if s.error:
        rows.append(("error", s.error))
    if s.hint:
        rows.append(("hint", s.hint))
    return rows


def _series(s: RunSummary, x: str = "step"):
    def pts(points):
        return [(p.step if x == "step" else p.tokens, p.value) for p in points]
    return pts(s.loss), pts(s.eval_loss)


def text(s: RunSummary, width: int = 72) -> str:
    out = [f"run {s.run_id}  ({s.path})", ""]
    rows = facts(s)
    w = max(len(k) for k, _ in rows)
    out += [f"  {k:<{w}}  {v}" for k, v in rows]
    loss, evals = _series(s)
    chart_w = max(20, width - 12)
    out += ["", *charts.text_chart([("train loss", loss), ("eval loss", evals)] if evals else [("", loss)],
                                   width=chart_w, height=10, title="loss")]
    if s.lr:
        out += ["", *charts.text_chart([("", [(p.step, p.value) for p in s.lr])], width=chart_w, height=5,
                                       title="learning rate")]
    if s.grad_norm:
        out += ["", *charts.text_chart([("", [(p.step, p.value) for p in s.grad_norm])], width=chart_w,
                                       height=5, title="grad norm")]
    out += _lists_text(s)
    return "\n".join(out) + "\n"


def _lists_text(s: RunSummary) -> list[str]:
    out = []
    if s.backoffs:
        out += ["", "backoffs:"] + [f"  step {step}: {msg}" for step, msg in s.backoffs]
    out += ["", "checkpoints:"] + ([f"  {rel}  {size(b) if exists else '(deleted)'}"
                                    for _, rel, exists, b in s.checkpoints] or ["  none"])
    out += ["", "outputs:"] + ([f"  {s.path / name}  {size(b)}" for name, b in s.outputs] or ["  none"])
    warnings = [w for w in s.warnings if w]
    if warnings:
        out += ["", f"warnings ({len(warnings)}, last 5):"] + [f"  {w}" for w in warnings[-5:]]
    out += ["", "next:"] + [f"  {cmd:<48} {why}" for cmd, why in commands(s)]
    return out


def chart_svgs(s: RunSummary) -> dict[str, str]:
    loss, evals = _series(s)
    svgs = {"loss": charts.svg_chart([("train loss", loss), ("eval loss", evals)], title="loss", y_label="loss",
                                     dots={"eval loss"})}
    if s.lr:
        svgs["lr"] = charts.svg_chart([("", [(p.step, p.value) for p in s.lr])], height=200,
                                      title="learning rate")
    if s.grad_norm:
        svgs["grad_norm"] = charts.svg_chart([("", [(p.step, p.value) for p in s.grad_norm])], height=200,
                                             title="grad norm")
    return svgs


def markdown(s: RunSummary, image_names: dict[str, str]) -> str:
    out = [f"# tunetop run {s.run_id}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v.replace('|', '/')} |" for k, v in facts(s)]
    for name, file in image_names.items():
        out += ["", f"![{name}]({file})"]
    out += ["", "```", *_lists_text(s)[1:], "```", ""]
    return "\n".join(out)


def html_page(s: RunSummary) -> str:
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts(s))
    figures = "\n".join(f'<figure id="chart-{n}">{svg}</figure>' for n, svg in chart_svgs(s).items())
    lists = html.escape("\n".join(_lists_text(s)[1:]))
    status_color = {"completed": "#16a34a", "running": "#2563eb"}.get(s.status, "#dc2626")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tunetop run {html.escape(s.run_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #111827; max-width: 60em; }}
h1 {{ font-size: 1.4em; }} .status {{ color: {status_color}; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }} th {{ color: #4b5563; }}
figure {{ margin: 0 0 1em 0; }} pre {{ background: #f3f4f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>tunetop run {html.escape(s.run_id)}: <span class="status">{html.escape(s.status)}</span></h1>
<table>{rows}</table>
{figures}
<pre>{lists}</pre>
<p><small>generated {time.strftime('%Y-%m-%d %H:%M:%S')} from {html.escape(str(s.path))}</small></p>
</body></html>
"""


def write_report(run_dir: Path, out: Path, fmt: str = "html") -> Path:
    """Write the report of a run as html or md (md: the charts as SVG files next to it). Returns out."""
    s = summarize(run_dir, require_steps=True)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "html":
            _atomic(out, html_page(s))
        elif fmt == "md":
            names = {}
            for name, svg in chart_svgs(s).items():
                file = out.with_name(f"{out.stem}-{name}.svg")
                _atomic(file, svg)
                names[name] = file.name
            _atomic(out, markdown(s, names))
        else:
            raise TunetopError(f"unknown report format {fmt!r}", "use --format text, md or html")
    except OSError as exc:
        raise TunetopError(f"cannot write {out}: {exc.strerror or exc}", "choose a folder you can write") from None
    return out


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
