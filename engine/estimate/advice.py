"""What to change when a run does not fit, and what fits on a given card.

Every suggestion keeps the effective batch (micro-batch x accumulation) unchanged, so the optimisation
stays the same run: the same samples per optimizer step, the same learning-rate schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .architectures import ARCHITECTURES
from .params import count_params
from .vram import Estimate, estimate, verdict

GiB = 1024**3


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


@dataclass(frozen=True)
class Suggestion:
    """One change of settings and the estimate after it. Readers use the fields; `text` is for terminals."""

    change: str  # what to change, e.g. "turn on gradient checkpointing (about 30% slower steps)"
    total: int  # estimated peak after the change, bytes
    verdict: str | None  # against the card, when one was given
    changes: dict  # the estimate() keyword arguments to apply (and grad_accum)

    @property
    def text(self) -> str:
        return f"{self.change}: {_gib(self.total)}" + (f" ({self.verdict})" if self.verdict else "")

    def __str__(self) -> str:
        return self.text


def _first_fitting(values: list[int], make, gpu_total_bytes: int | None) -> tuple[int, Estimate]:
    """The first (largest) value whose estimate fits; else the last one tried."""
    est = None
    for v in values:
        est = make(v)
        if gpu_total_bytes is None or verdict(est, gpu_total_bytes) == "fits":
            return v, est
    return v, est


def suggest(config: dict, gpu_total_bytes: int | None = None, *, grad_accum: int = 1, **kwargs) -> list[Suggestion]:
    """Concrete changes that lower the estimate, each with the total after it.

    kwargs are estimate()'s (method, micro_batch, seq_len, gradient_checkpointing, ...). Only changes that
    lower the total are returned. With a card size, the micro-batch and sequence-length suggestions pick
    the largest value that fits.
    """
    base = estimate(config, **kwargs)
    out: list[Suggestion] = []

    def add(text: str, changes: dict, est: Estimate) -> None:
        if est.total >= base.total:
            return
        v = verdict(est, gpu_total_bytes) if gpu_total_bytes else None
        out.append(Suggestion(text, est.total, v, changes))

    mb = kwargs["micro_batch"]
    if mb > 1:
        # Dividing the micro-batch by k and multiplying the accumulation by k keeps micro_batch x
        # accumulation. Only exact divisors (halvings for powers of two) keep it exactly.
        smaller = [d for d in range(mb - 1, 0, -1) if mb % d == 0]
        new_mb, est = _first_fitting(
            smaller, lambda m: estimate(config, **{**kwargs, "micro_batch": m}), gpu_total_bytes
        )
        new_accum = grad_accum * (mb // new_mb)
        add(
            f"micro-batch {mb} -> {new_mb} with gradient accumulation {grad_accum} -> {new_accum} "
            f"(effective batch {mb * grad_accum} kept)",
            {"micro_batch": new_mb, "grad_accum": new_accum},
            est,
        )
    if not kwargs.get("gradient_checkpointing"):
        est = estimate(config, **{**kwargs, "gradient_checkpointing": True})
        add("turn on gradient checkpointing (about 30% slower steps)", {"gradient_checkpointing": True}, est)
    method = kwargs["method"]
    if method == "lora":
        est = estimate(config, **{**kwargs, "method": "qlora"})
        add("QLoRA (4-bit base) instead of LoRA", {"method": "qlora"}, est)
    if method == "full":
        est = estimate(config, **{**kwargs, "method": "lora"})
        add("LoRA instead of full fine-tuning", {"method": "lora"}, est)
        if kwargs.get("optimizer", "adamw_torch") in ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw"):
            est = estimate(config, **{**kwargs, "optimizer": "paged_adamw_8bit"})
            add("8-bit optimizer (paged_adamw_8bit)", {"optimizer": "paged_adamw_8bit"}, est)
    seq = kwargs["seq_len"]
    if seq > 256:
        lengths = []
        s = seq
        while s > 256:
            s = max(256, s // 2)
            lengths.append(s)
        new_seq, est = _first_fitting(
            lengths, lambda s: estimate(config, **{**kwargs, "seq_len": s}), gpu_total_bytes
        )
        add(
            f"sequence length {seq} -> {new_seq} (longer samples get truncated; batch unchanged)",
            {"seq_len": new_seq},
            est,
        )
    if gpu_total_bytes and out and not any(x.verdict == "fits" for x in out):
        combined = _combine(config, gpu_total_bytes, grad_accum, kwargs)
        if combined:
            out.append(combined)
    return out


def _combine(config: dict, gpu_total_bytes: int, grad_accum: int, kwargs: dict) -> Suggestion | None:
    """No single change is enough: apply them one after another until it fits. The order puts first what
    costs only speed (checkpointing, smaller micro-batches), then what may cost quality (8-bit optimizer
    state, a parameter-efficient method), and truncating the data last."""
    current = dict(kwargs)
    texts: list[str] = []
    accum = grad_accum
    steps = []
    if not current.get("gradient_checkpointing"):
        steps.append(("gradient checkpointing on", {"gradient_checkpointing": True}))
    mb = current["micro_batch"]
    for d in range(mb - 1, 0, -1):
        if mb % d == 0:
            steps.append((f"micro-batch {d} with accumulation {grad_accum * (mb // d)}", {"micro_batch": d}))
    if current["method"] == "full":
        if current.get("optimizer", "adamw_torch") in ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw"):
            steps.append(("8-bit optimizer (paged_adamw_8bit)", {"optimizer": "paged_adamw_8bit"}))
        steps.append(("LoRA instead of full fine-tuning", {"method": "lora"}))
    if current["method"] in ("lora", "full"):
        steps.append(("QLoRA", {"method": "qlora"}))
    seq = current["seq_len"]
    while seq > 256:
        seq = max(256, seq // 2)
        steps.append((f"sequence length {seq}", {"seq_len": seq}))
    last_mb_text = None
    for text, change in steps:
        current.update(change)
        if "micro_batch" in change:
            last_mb_text = text
            accum = grad_accum * (mb // change["micro_batch"])
        else:
            texts.append(text)
        est = estimate(config, **current)
        if verdict(est, gpu_total_bytes) == "fits":
            parts = texts + ([last_mb_text] if last_mb_text else [])
            changes = {k: current[k] for k in ("gradient_checkpointing", "micro_batch", "method", "seq_len",
                                               "optimizer") if current.get(k) != kwargs.get(k)}
            changes["grad_accum"] = accum
            return Suggestion(f"together: {', '.join(parts)}", est.total, "fits", changes)
    return None


class Fit(NamedTuple):
    model_id: str
    params: int
    estimate: Estimate
    verdict: str


def largest_fitting(gpu_bytes: int, method: str, seq_len: int, micro_batch: int = 1, *,
                    models: dict[str, dict] | None = None, **kwargs) -> list[Fit]:
    """Which models can be trained on a card of gpu_bytes: those that fit or are tight, largest first.

    models: id -> config (default: the bundled table). kwargs go to estimate() (gradient_checkpointing, ...).
    Models the estimate cannot handle (or whose settings do not apply, e.g. a target module they lack) are
    left out.
    """
    fits = []
    for model_id, cfg in (ARCHITECTURES if models is None else models).items():
        try:
            est = estimate(cfg, method=method, micro_batch=micro_batch, seq_len=seq_len, **kwargs)
        except ValueError:  # UnsupportedArchitecture included
            continue
        v = verdict(est, gpu_bytes)
        if v != "does not fit":
            fits.append(Fit(model_id, count_params(cfg).total, est, v))
    fits.sort(key=lambda f: f.params, reverse=True)
    return fits
