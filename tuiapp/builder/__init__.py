"""The run builder: a keyboard-driven form over saved profiles with a live VRAM estimate and a dataset
preview (n on the dashboard). `RunBuilderScreen` dismisses with the launched run's directory, or None."""
from .screen import RunBuilderScreen

__all__ = ["RunBuilderScreen"]
