""""What can I train here?": for a GPU, the largest model per method that fits at a sequence length.

The pool is the bundled architecture table (engine/estimate/architectures.py: the families people train,
each at its real sizes) plus every model in the local Hugging Face cache (engine.estimate.cached_models).
The search is the estimator's (largest_fitting); this adds the settings of a new profile (schema defaults:
LoRA r=16 on all-linear, gradient checkpointing, paged 8-bit AdamW, auto precision resolved for the card)
and the next size up with its figure, so the answer also says what would not fit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..estimate import architectures, vram
from ..estimate.advice import largest_fitting
from ..estimate.config_source import cached_models
from ..estimate.params import count_params
from ..profile.schema import Profile
from .profile_estimate import Settings, estimate_kwargs, run_estimate, settings_of


@dataclass(frozen=True)
class Pick:
    model_id: str
    params: int
    total: int        # estimated bytes
    verdict: str
    cached: bool = False   # found in the local HF cache (not only the bundled table)


@dataclass(frozen=True)
class Capacity:
    method: str
    fits: Pick | None       # the largest model that fits (<= 85% of the card)
    tight: Pick | None      # a larger one that would be tight (85-100%), if any
    next_up: Pick | None    # the next larger model, which does not fit


def default_settings(seq_len: int, micro_batch: int = 1) -> Settings:
    base = settings_of(Profile())
    # lora_dropout 0: the schema's 0.05 is refused by peft on MoE experts (all-linear); 0 is valid everywhere.
    return replace(base, seq_len=seq_len, micro_batch=micro_batch, grad_accum=1, auto_batch=False, lora_dropout=0.0)


def model_pool() -> tuple[dict[str, dict], set[str]]:
    """(id -> config, the ids found in the HF cache). A cached copy replaces the bundled entry of its id."""
    pool = dict(architectures.ARCHITECTURES)
    cached = set()
    for repo_id, cfg in cached_models():
        try:
            count_params(cfg)
        except ValueError:
            continue   # an architecture the estimate does not know (or not a causal LM)
        pool[repo_id] = cfg
        cached.add(repo_id)
    return pool, cached


def capacity(gpu_bytes: int, seq_len: int = 2048, micro_batch: int = 1, methods: tuple = vram.METHODS,
             capability: tuple[int, int] | None = None) -> list[Capacity]:
    pool, cached = model_pool()
    result = []
    for method in methods:
        s = replace(default_settings(seq_len, micro_batch), method=method)
        kwargs = {k: v for k, v in estimate_kwargs(s, capability).items()
                  if k not in ("method", "seq_len", "micro_batch")}
        found = [Pick(f.model_id, f.params, f.estimate.total, f.verdict, f.model_id in cached)
                 for f in largest_fitting(gpu_bytes, method, seq_len, micro_batch, models=pool, **kwargs)]
        fits = next((p for p in found if p.verdict == "fits"), None)
        floor = fits.params if fits else -1
        tight = next((p for p in found if p.verdict == "tight" and p.params > floor), None)
        above = max(floor, tight.params if tight else -1)
        result.append(Capacity(method, fits, tight, _next_up(s, gpu_bytes, above, pool, cached, capability)))
    return result


def _next_up(s: Settings, gpu_bytes: int, above: int, pool: dict, cached: set, capability) -> Pick | None:
    """The smallest model of the pool larger than `above` parameters, with its estimate (it does not fit)."""
    bigger = sorted(((count_params(cfg).total, model_id, cfg) for model_id, cfg in pool.items()
                     if count_params(cfg).total > above), key=lambda t: (t[0], t[1]))
    for params, model_id, cfg in bigger:
        try:
            total = run_estimate(cfg, s, capability).total
        except ValueError:
            continue
        return Pick(model_id, params, total, vram.verdict(total, gpu_bytes), model_id in cached)
    return None
