"""One call that answers "does this profile fit?": the estimate, a verdict per GPU and suggestions.

Used by `tunetop estimate` and by the run builder's estimate panel, so both show the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..estimate import vram
from ..estimate.advice import Suggestion, suggest
from ..profile import Profile
from .gpus import GpuCard
from .model_config import ModelConfig, resolve_config
from .profile_estimate import Settings, estimate_kwargs, run_estimate, settings_of


@dataclass(frozen=True)
class GpuVerdict:
    card: GpuCard
    verdict: str            # "fits" | "tight" | "does not fit"
    share: float            # estimate / card memory
    auto_micro_batch: int | None = None   # micro_batch = "auto": the largest that fits this card


@dataclass
class FitCheck:
    model: ModelConfig
    settings: Settings
    estimate: vram.Estimate | None = None
    problem: str = ""       # why there is no estimate (the model, or the estimator refusing the config)
    hint: str = ""
    gpus: list[GpuVerdict] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    target: GpuCard | None = None   # the card the suggestions are for (the smallest one that is short)
    note: str = ""                  # said when no suggestion is enough

    @property
    def available(self) -> bool:
        return self.estimate is not None


def check_profile(profile: Profile, cards: list[GpuCard], config: ModelConfig | None = None) -> FitCheck:
    """Never raises for a bad model or config: the problem is in the result (launch is still allowed)."""
    model = config or resolve_config(profile.model.name_or_path, profile.model.revision)
    settings = settings_of(profile)
    fc = FitCheck(model=model, settings=settings)
    if model.config is None:
        fc.problem, fc.hint = model.problem, model.hint
        return fc
    try:
        fc.estimate = run_estimate(model.config, settings)
    except ValueError as exc:
        fc.problem = str(exc)
        fc.hint = "the estimate covers Llama-style decoders (Llama, Mistral, Qwen2/3, Gemma, Phi-3)"
        return fc
    total = fc.estimate.total
    for card in cards:
        auto = _largest_micro_batch(model.config, settings, card.total_bytes) if settings.auto_batch else None
        fc.gpus.append(GpuVerdict(card, vram.verdict(total, card.total_bytes), total / card.total_bytes, auto))
    short = [g for g in fc.gpus if g.verdict != "fits"]
    if short:
        # The estimator's own advice (engine.estimate.advice): every change keeps the effective batch.
        fc.target = min(short, key=lambda g: g.card.total_bytes).card
        kwargs = estimate_kwargs(settings)
        if settings.auto_batch:
            kwargs["micro_batch"] = 1        # "auto": the engine already picks the micro-batch
        fc.suggestions = suggest(model.config, fc.target.total_bytes, grad_accum=settings.grad_accum, **kwargs)
        if any(s.verdict == "tight" for s in fc.suggestions) and not any(s.verdict == "fits" for s in fc.suggestions):
            fc.note = (f"at best tight on {fc.target.name} (over 85% of it): the engine backs off on out-of-memory, "
                       "but a smaller model or a larger GPU is safer")
        elif not any(s.verdict == "fits" for s in fc.suggestions):
            fc.note = f"no change of settings makes it fit {fc.target.name}: a smaller model, or a larger GPU"
    return fc


def _largest_micro_batch(config: dict, s: Settings, gpu_bytes: int, limit: int = 256) -> int:
    """The largest micro-batch (doubling, then bisecting) whose estimate still "fits"; 0 if even 1 does not."""
    def fits(mb: int) -> bool:
        return vram.verdict(run_estimate(config, replace(s, micro_batch=mb)).total, gpu_bytes) == "fits"
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
