"""Plain-text rendering of an estimate, and the rule-of-thumb figures users already know.

Why show the rule of thumb: users compare against it anyway; showing it beside the computed figure (and
saying which one to trust) answers "why is this different from what I read" before it is asked.
"""

from __future__ import annotations

from typing import NamedTuple

from .vram import Estimate, verdict

GiB = 1024**3


class RuleOfThumb(NamedTuple):
    method: str
    billions: float  # model size, billions of parameters
    gb: float  # commonly quoted peak, GB
    note: str


# DESIGN.md, "VRAM estimate: facts": worth showing beside the estimate, not trusting.
RULES_OF_THUMB: list[RuleOfThumb] = [
    RuleOfThumb("qlora", 7, 9, "batch 4"),
    RuleOfThumb("qlora", 13, 15, "batch 4"),
    RuleOfThumb("qlora", 30, 28, "batch 4"),
    RuleOfThumb("qlora", 70, 60, "batch 4"),
    RuleOfThumb("lora", 7, 20, ""),
    RuleOfThumb("full", 7, 60, ""),
]


def rule_of_thumb(method: str, params: int) -> RuleOfThumb | None:
    """The quoted figure for the same method and the nearest size (within a factor of 2), or None."""
    b = params / 1e9
    rows = [r for r in RULES_OF_THUMB if r.method == method and 0.5 <= b / r.billions <= 2]
    return min(rows, key=lambda r: abs(r.billions - b)) if rows else None


_METHOD_NAMES = {"qlora": "QLoRA", "lora": "LoRA", "full": "full fine-tuning"}


def _g(n: int) -> str:
    return f"{n / GiB:8.2f}"


def format_estimate(
    est: Estimate,
    *,
    model: str | None = None,
    source: str | None = None,
    gpu_total_bytes: int | None = None,
    gpu_name: str | None = None,
    suggestions: list[str] | None = None,
) -> str:
    """A plain-text table of the breakdown, the verdict for a card, the rule of thumb and suggestions."""
    lines = []
    if model:
        lines.append(f"VRAM estimate for {model}" + (f"  [{source}]" if source else ""))
    what = _METHOD_NAMES.get(est.method, est.method)
    if est.method != "full":
        what += f" r={est.lora_r}"
    lines.append(
        f"{what}, micro-batch {est.micro_batch} x {est.seq_len} tokens, gradient checkpointing "
        f"{'on' if est.gradient_checkpointing else 'off'}, {est.optimizer}"
    )
    lines.append(f"{est.params / 1e9:.2f} B parameters, {est.trainable_params / 1e6:,.1f} M trainable")
    lines.append("")
    width = max(len(label) for label, _ in est.breakdown()) + 2
    lines.append(f"  {'':<{width}}{'GiB':>8}")
    for label, n in est.breakdown():
        lines.append(f"  {label:<{width}}{_g(n)}")
    lines.append(f"  {'-' * (width + 8)}")
    lines.append(f"  {'total':<{width}}{_g(est.total)}")
    if gpu_total_bytes:
        name = gpu_name or "this GPU"
        pct = 100 * est.total / gpu_total_bytes
        lines.append("")
        v = verdict(est, gpu_total_bytes)
        lines.append(f"{name} ({gpu_total_bytes / GiB:.1f} GiB): {v} ({pct:.0f}% of the card)")
    rule = rule_of_thumb(est.method, est.params)
    if rule:
        lines.append("")
        extra = f", {rule.note}" if rule.note else ""
        lines.append(
            f"Rule of thumb ({_METHOD_NAMES[rule.method]} {rule.billions:g}B{extra}): about {rule.gb:g} GB. "
            "Shown for comparison; the estimate above is computed for this exact setup."
        )
    for note in est.notes:
        lines.append(f"note: {note}")
    if suggestions:
        lines.append("")
        lines.append("To use less memory (effective batch unchanged):")
        lines.extend(f"  - {s}" for s in suggestions)
    return "\n".join(lines)
