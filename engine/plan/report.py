"""Plain-text tables for a terminal: `tunetop estimate` and `tunetop fit` print these."""
from __future__ import annotations

from ..estimate.report import rule_of_thumb
from .capacity import Capacity, default_settings
from .check import FitCheck
from .gpus import GpuCard

GiB = 1024**3


def gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n < 10 * GiB else f"{n / GiB:.1f} GiB"


def billions(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def label_of(name: str) -> str:
    """The estimator's breakdown labels, spelled out: the LoRA line holds its gradients and optimizer too."""
    return {"adapters": "adapters + grads + optimizer"}.get(name, name)


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
    lines[0] += f"  {billions(e.params)} parameters, {billions(e.trainable_params)} trained"
    rows = [(label_of(label), gib(value)) for label, value in e.breakdown()] + [("total", gib(e.total))]
    lines += ["", "peak memory per GPU"] + _table(rows)
    if gpu_note:
        lines += ["", gpu_note]
    if fc.gpus:
        rows = [("GPU", "memory", "use", "verdict")]
        for g in fc.gpus:
            verdict = g.verdict + (f" (largest micro-batch that fits: {g.auto_micro_batch})"
                                   if g.auto_micro_batch is not None else "")
            rows.append((g.card.name, gib(g.card.total_bytes), f"{g.share:.0%}", verdict))
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
        rows.append((c.method, best.model_id if best else "nothing in the table",
                     billions(best.params) if best else "-", gib(best.total) if best else "-",
                     f"{more.model_id}: {gib(more.total)}, {more.verdict}" if more else "-"))
    return "\n".join([head] + _table(rows))
