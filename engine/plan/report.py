"""Plain-text tables for a terminal: `tunetop estimate` and `tunetop fit` print these (the one text report;
the run builder renders the same FitCheck fields with styles)."""
from __future__ import annotations

from ..estimate.report import rule_of_thumb
from .capacity import Capacity, default_settings
from .check import FitCheck
from ..estimate.gpus import GpuCard

GiB = 1024**3


def gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if abs(n) < 10 * GiB else f"{n / GiB:.1f} GiB"


def count_text(n: int) -> str:
    """A parameter count in the unit that keeps it readable: 8.03 B, 41.9 M, 139.6 K, 512 (never "0.0 M")."""
    for unit, size, digits in (("B", 1e9, 2), ("M", 1e6, 1), ("K", 1e3, 1)):
        if n >= size:
            return f"{n / size:.{digits}f} {unit}"
    return str(n)


billions = count_text  # the name the builder's dialogs use


def label_of(name: str) -> str:
    """The estimator's breakdown labels, spelled out where a reader would ask."""
    return {"adapters + grads": "adapters + their grads"}.get(name, name)


def _table(rows: list[tuple], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows]


def estimate_text(model_ref: str, fc: FitCheck, gpu_note: str | None = None) -> str:
    lines = [f"model     {model_ref}" + (f"  [{fc.model.origin}]" if fc.model.origin else ""),
             f"settings  {fc.settings.describe()}"]
    if not fc.available:
        lines += ["", f"estimate unavailable: {fc.problem}"]
        if fc.hint:
            lines.append(f"  hint: {fc.hint}")
        lines.append("(launching still works: the estimate is advice, not a gate)")
        return "\n".join(lines)
    e = fc.estimate
    lines[0] += f"  {count_text(e.params)} parameters, {count_text(e.trainable_params)} trained"
    rows = [(label_of(label), gib(value)) for label, value in e.breakdown()] + [("total", gib(e.total))]
    if e.paged_out:
        rows.append(("worst case (paged state on the GPU)", gib(e.worst_case)))
    lines += ["", f"peak memory per GPU ({fc.precision})"] + _table(rows)
    if gpu_note:
        lines += ["", gpu_note]
    if fc.gpus:
        rows = [("GPU", "memory", "precision", "estimate", "use", "verdict")]
        for g in fc.gpus:
            verdict = g.verdict + (f" (largest micro-batch that fits: {g.auto_micro_batch})"
                                   if g.auto_micro_batch is not None else "")
            rows.append((g.card.name, gib(g.card.total_bytes), g.precision, gib(g.total), f"{g.share:.0%}", verdict))
        lines += [""] + _table(rows, "")
    if fc.suggestions:
        lines += ["", f"to fit {fc.target.name} (effective batch kept):"]
        lines += [f"  - {s.text}" for s in fc.suggestions]
    if fc.note:
        lines.append(fc.note)
    rule = rule_text(e)
    if rule:
        lines += ["", rule]
    lines += [f"note: {n}" for n in e.notes]
    return "\n".join(lines)


def rule_text(e) -> str | None:
    """The figure users quote for this method and size (engine.estimate.report.rule_of_thumb), labelled as such."""
    rule = rule_of_thumb(e.method, e.params)
    if rule is None:
        return None
    extra = f", {rule.note}" if rule.note else ""
    return (f"rule of thumb ({rule.method} {rule.billions:g}B{extra}): about {rule.gb:g} GB; shown for comparison, "
            "the estimate above is for these exact settings")


def capacity_text(card: GpuCard, seq_len: int, micro_batch: int, caps: list[Capacity]) -> str:
    s = default_settings(seq_len, micro_batch)
    head = (f"{card.name} ({gib(card.total_bytes)}{', detected' if card.detected else ''}) at seq {seq_len}, "
            f"micro-batch {micro_batch}, checkpointing on, {s.optimizer}, LoRA r={s.lora_r} {s.target_modules}")
    rows = [("method", "largest that fits", "params", "estimate", "next size up")]
    for c in caps:
        best = c.fits
        more = c.tight or c.next_up
        mark = lambda p: p.model_id + (" (HF cache)" if p.cached else "")  # noqa: E731
        rows.append((c.method, mark(best) if best else "nothing in the table",
                     count_text(best.params) if best else "-", gib(best.total) if best else "-",
                     f"{mark(more)} ({count_text(more.params)}): {gib(more.total)}, {more.verdict}" if more else "-"))
    return "\n".join([head] + _table(rows))
