"""Several GPUs and several machines: the layout of a run's processes and the torchrun command that starts
them. Torch-free at import (the launcher and the dashboard use it); the engine's side is
engine/train/distributed_setup.py."""
from .command import torchrun_command, torchrun_env
from ..profile.distributed_rules import problems
from .layout import Layout, LayoutError, resolve, with_overrides

__all__ = ["Layout", "LayoutError", "problems", "resolve", "with_overrides", "torchrun_command", "torchrun_env"]
