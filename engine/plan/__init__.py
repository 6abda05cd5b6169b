"""Planning a run before it starts: the one door to the memory estimate for every caller outside
engine/estimate.

Light (no torch at import). engine/estimate/ holds the formulas and the config sources; this package maps
a profile onto them (profile_estimate.py, with switches.py's table of which field moves which term),
resolves precision as the engine does (precision.py), compares with GPUs (gpus.py, check.py), answers
"what can I train here" (capacity.py) and renders text (report.py).

Who calls what:

| caller                                   | function                                                   |
|------------------------------------------|------------------------------------------------------------|
| `tunetop estimate` (tuiapp/plan_cli.py)  | check_profile, detect / pick_card / common_cards, estimate_text |
| `tunetop fit` (tuiapp/plan_cli.py)       | capacity, capacity_text                                    |
| run builder panel (estimate_panel.py)    | check_profile, common_cards; FitCheck / Suggestion fields  |
| run builder "what fits" (dialogs.py)     | capacity, default_settings, count_text (billions), gib     |
| run builder GPU list (screen.py)         | detect                                                     |
| profile preflight (engine/profile)       | engine.estimate.config_source.resolve (below engine.plan: the one resolver) |
| engine probe (engine/train/probe.py)     | start_size, optimizer_state_bytes                          |
| engine placement (engine/train/model.py) | resolve_precision                                          |
| tests, benchmarks                        | engine.estimate.estimate (the formulas themselves)         |

Per-GPU layouts (issue 13: DDP, FSDP, model_parallel) are to enter as arguments of check_profile and
start_size (a strategy and a world size); today every figure is for one GPU of one process.
"""
from ..estimate.config_source import ModelConfig
from ..estimate.config_source import resolve as resolve_config
from ..estimate.gpus import GpuCard
from .capacity import Capacity, Pick, capacity, default_settings
from .check import FitCheck, GpuVerdict, check_profile, largest_micro_batch
from .gpus import common_cards, detect, pick_card
from .precision import PrecisionUnavailable, estimator_dtypes, resolve_precision
from .profile_estimate import Settings, estimate_kwargs, run_estimate, settings_of
from .report import count_text, estimate_text, capacity_text, gib
from .start import StartSize, optimizer_state_bytes, start_size
from .switches import NOT_MEMORY, SWITCHES

__all__ = ["Capacity", "FitCheck", "GpuCard", "GpuVerdict", "ModelConfig", "NOT_MEMORY", "Pick",
           "PrecisionUnavailable", "SWITCHES", "Settings", "StartSize", "capacity", "capacity_text",
           "check_profile", "common_cards", "count_text", "default_settings", "detect", "estimate_kwargs",
           "estimate_text", "estimator_dtypes", "gib", "largest_micro_batch", "optimizer_state_bytes", "pick_card",
           "resolve_config", "resolve_precision", "run_estimate", "settings_of", "start_size"]
