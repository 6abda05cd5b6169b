""""What can I train here?": for a GPU, the largest common model per method that fits at a sequence length.

The search is the estimator's (engine.estimate.advice.largest_fitting over the bundled architecture
table); this adds the settings of a new profile (schema defaults: LoRA r=16 on all-linear, gradient
checkpointing, paged 8-bit AdamW, bf16) and the next size up, so the answer says what would not fit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..estimate import architectures, vram
from ..estimate.advice import largest_fitting
from ..estimate.params import UnsupportedArchitecture, count_params
from ..profile.schema import Profile
from .profile_estimate import Settings, estimate_kwargs, run_estimate, settings_of


@dataclass(frozen=True)
class Pick:
    model_id: str
    params: int
    total: int        # estimated bytes
    verdict: str


@dataclass(frozen=True)
class Capacity:
    method: str
    fits: Pick | None       # the largest model that fits (<= 85% of the card)
    tight: Pick | None      # a larger one that would be tight (85-100%), if any
    next_up: Pick | None    # the next larger model, which does not fit


def default_settings(seq_len: int, micro_batch: int = 1) -> Settings:
    base = settings_of(Profile())
    return replace(base, seq_len=seq_len, micro_batch=micro_batch, grad_accum=1, auto_batch=False)


def capacity(gpu_bytes: int, seq_len: int = 2048, micro_batch: int = 1,
             methods: tuple = vram.METHODS) -> list[Capacity]:
    result = []
    for method in methods:
        s = replace(default_settings(seq_len, micro_batch), method=method)
        kwargs = {k: v for k, v in estimate_kwargs(s).items() if k not in ("method", "seq_len", "micro_batch")}
        found = [Pick(f.model_id, f.params, f.estimate.total, f.verdict)
                 for f in largest_fitting(gpu_bytes, method, seq_len, micro_batch, **kwargs)]
        fits = next((p for p in found if p.verdict == "fits"), None)
        floor = fits.params if fits else -1
        tight = next((p for p in found if p.verdict == "tight" and p.params > floor), None)
        result.append(Capacity(method, fits, tight, _next_up(s, gpu_bytes, max(floor, tight.params if tight else -1))))
    return result


def _next_up(s: Settings, gpu_bytes: int, above: int) -> Pick | None:
    """The smallest bundled model larger than `above` parameters, with its estimate (it does not fit)."""
    bigger = sorted(((count_params(cfg).total, model_id, cfg) for model_id, cfg in architectures.ARCHITECTURES.items()
                     if _params(cfg) > above), key=lambda t: t[0])
    for params, model_id, cfg in bigger:
        try:
            total = run_estimate(cfg, s).total
        except (UnsupportedArchitecture, ValueError):
            continue
        return Pick(model_id, params, total, vram.verdict(total, gpu_bytes))
    return None


def _params(cfg: dict) -> int:
    try:
        return count_params(cfg).total
    except ValueError:
        return -1
