"""One call that answers "does this profile fit?": the estimate, a verdict per GPU and suggestions.

Used by `tunetop estimate` and by the run builder's estimate panel, so both show the same thing. The
estimate is per card where the card changes it: precision = "auto" is bf16 on Ampere and newer, fp16 on
Turing and older (engine/plan/precision.py), as the engine will run it there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..estimate import vram
from ..estimate.advice import Suggestion, suggest
from ..estimate.config_source import ModelConfig, resolve
from ..estimate.gpus import GpuCard
from ..profile import Profile
from .profile_estimate import Settings, estimate_kwargs, run_estimate, settings_of, training_precision


@dataclass(frozen=True)
class GpuVerdict:
    card: GpuCard
    verdict: str            # "fits" | "tight" | "does not fit"
    share: float            # estimate / card memory
    auto_micro_batch: int | None = None   # micro_batch = "auto": the largest that fits this card
    precision: str = "bf16"               # what the engine trains in on this card
    total: int = 0                        # the estimate on this card (it differs where the precision does)


@dataclass
class FitCheck:
    model: ModelConfig
    settings: Settings
    estimate: vram.Estimate | None = None   # on the first card (or a bf16-capable GPU when none is given)
    problem: str = ""       # why there is no estimate (the model, or the estimator refusing the config)
    hint: str = ""
    gpus: list[GpuVerdict] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    target: GpuCard | None = None   # the card the suggestions are for (the smallest one that is short)
    note: str = ""                  # said when no suggestion is enough
    precision: str = "bf16"         # what `estimate` was computed for

    @property
    def available(self) -> bool:
        return self.estimate is not None


def check_profile(profile: Profile, cards: list[GpuCard], config: ModelConfig | None = None) -> FitCheck:
    """Never raises for a bad model or config: the problem is in the result (launch is still allowed)."""
    model = config or resolve(profile.model.name_or_path, profile.model.revision)
    settings = settings_of(profile)
    fc = FitCheck(model=model, settings=settings)
    if model.config is None:
        fc.problem, fc.hint = model.problem, model.hint
        return fc
    first = cards[0].compute_capability if cards else None
    try:
        fc.estimate = run_estimate(model.config, settings, first)
    except ValueError as exc:
        fc.problem = getattr(exc, "message", None) or str(exc)
        fc.hint = getattr(exc, "hint", "") or "launching still works; the engine needs no estimate"
        return fc
    fc.precision = training_precision(settings, first)
    by_precision = {fc.precision: fc.estimate}
    for card in cards:
        precision = training_precision(settings, card.compute_capability)
        if precision not in by_precision:
            by_precision[precision] = run_estimate(model.config, settings, card.compute_capability)
        total = by_precision[precision].total
        auto = _largest_micro_batch(model.config, settings, card) if settings.auto_batch else None
        fc.gpus.append(GpuVerdict(card, vram.verdict(total, card.total_bytes), total / card.total_bytes, auto,
                                  precision, total))
    short = [g for g in fc.gpus if g.verdict != "fits"]
    if short:
        # The estimator's own advice (engine.estimate.advice): every change keeps the effective batch.
        fc.target = min(short, key=lambda g: g.card.total_bytes).card
        kwargs = estimate_kwargs(settings, fc.target.compute_capability)
        if settings.auto_batch:
            kwargs["micro_batch"] = 1        # "auto": the engine already picks the micro-batch
        fc.suggestions = suggest(model.config, fc.target.total_bytes, grad_accum=settings.grad_accum, **kwargs)
        if any(s.verdict == "tight" for s in fc.suggestions) and not any(s.verdict == "fits" for s in fc.suggestions):
            fc.note = (f"at best tight on {fc.target.name} (over 85% of it): the engine backs off on out-of-memory, "
                       "but a smaller model or a larger GPU is safer")
        elif not any(s.verdict == "fits" for s in fc.suggestions):
            fc.note = f"no change of settings makes it fit {fc.target.name}: a smaller model, or a larger GPU"
    return fc


def largest_micro_batch(config: dict, s: Settings, gpu_bytes: int, capability=None, *, limit: int = 256,
                        fraction: float | None = None) -> int:
    """The largest micro-batch (doubling, then bisecting) whose estimate still "fits" (or stays under
    `fraction` of the card); 0 if even 1 does not."""
    def fits(mb: int) -> bool:
        total = run_estimate(config, replace(s, micro_batch=mb), capability).total
        return total <= fraction * gpu_bytes if fraction else vram.verdict(total, gpu_bytes) == "fits"
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _largest_micro_batch(config: dict, s: Settings, card: GpuCard) -> int:
    return largest_micro_batch(config, s, card.total_bytes, card.compute_capability)
