"""Kept for engine/distributed/estimate.py, which imports resolve_config from here: use engine.plan.resolve_config
(engine.estimate.config_source.resolve, the one resolver). Remove once no caller imports this module."""
from ..estimate.config_source import ModelConfig, resolve as resolve_config  # noqa: F401
