"""Planning a run before it starts: where the model's config.json comes from, the VRAM estimate of a
profile against GPUs with a verdict and suggestions, and the largest common model each GPU can train.

Light (no torch): the CLI (`tunetop estimate`, `tunetop fit`) and the run builder both call it, so they
show the same figures. The estimator itself (engine/estimate/: formulas, find_config, the suggestions,
largest_fitting) does the work; this package maps a profile onto it and adds the GPUs to compare with.
"""
from .check import FitCheck, GpuVerdict, check_profile
from .gpus import GpuCard, common_cards, detect, pick_card
from .model_config import ModelConfig, resolve_config

__all__ = ["FitCheck", "GpuVerdict", "check_profile", "GpuCard", "common_cards", "detect", "pick_card",
           "ModelConfig", "resolve_config"]
