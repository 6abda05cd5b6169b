"""VRAM estimate for fine-tuning, from config.json alone (docs/facts.md, "VRAM estimate: facts").

Torch-free: importing this package loads only the standard library, so the TUI and the CLI can use it
without paying for torch. Callers outside engine/estimate and engine/plan go through engine.plan (its
docstring has the table of who calls what); this package is the formulas and the config sources.

    from engine.estimate import find_config, estimate
    cfg, source = find_config("meta-llama/Llama-3.1-8B")
    est = estimate(cfg, method="qlora", micro_batch=4, seq_len=2048, gradient_checkpointing=True)
"""

from .advice import Fit, Suggestion, largest_fitting, suggest
from .architectures import ARCHITECTURES, known_ids, lookup
from .config_source import (ConfigSource, EstimateUnavailable, ModelConfig, cached_models, find_config,
                            hf_cache_dir, resolve)
from .gpus import COMMON_GPUS, GPU, GpuCard, find_gpu
from .params import ParamCounts, UnsupportedArchitecture, count_params
from .report import RULES_OF_THUMB, RuleOfThumb, rule_of_thumb
from .vram import METHODS, OPTIMIZERS, TIGHT_FRACTION, Estimate, estimate, verdict


def estimate_model(model: str, *, revision: str | None = None, **kwargs) -> tuple[Estimate, str]:
    """find_config + estimate: (estimate, where the config came from). Raises EstimateUnavailable."""
    config, source = find_config(model, revision)
    try:
        return estimate(config, **kwargs), source
    except UnsupportedArchitecture as exc:
        raise EstimateUnavailable(f"no estimate for {model!r}: {exc.message}", exc.hint) from None


__all__ = [
    "ARCHITECTURES", "COMMON_GPUS", "ConfigSource", "Estimate", "EstimateUnavailable", "Fit", "GPU", "GpuCard",
    "METHODS", "ModelConfig", "OPTIMIZERS", "ParamCounts", "RULES_OF_THUMB", "RuleOfThumb", "Suggestion",
    "TIGHT_FRACTION", "UnsupportedArchitecture", "cached_models", "count_params", "estimate", "estimate_model",
    "find_config", "find_gpu", "hf_cache_dir", "known_ids", "largest_fitting", "lookup", "resolve",
    "rule_of_thumb", "suggest", "verdict",
]
