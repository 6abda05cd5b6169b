"""Datasets: read rows from files (or the HF cache), detect their format, turn each into a conversation or
plain text, and report bad rows by number. Pure Python (no torch, no `datasets` unless a hub dataset is
named), so `tunetop validate` and the TUI's preview can use it."""
from .formats import FORMATS, BadRow, detect_format, normalise
from .load import DataError, DataReport, load_data, suggest_columns
from .readers import ReadError

__all__ = ["FORMATS", "BadRow", "detect_format", "normalise", "DataError", "DataReport", "load_data",
           "suggest_columns", "ReadError"]
