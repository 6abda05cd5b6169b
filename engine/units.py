"""Bytes and durations as people read them, in one wording for every screen: the dashboard and the CLI
(tuiapp/fmt.py re-exports these), reports, comparisons and notifications."""
from __future__ import annotations


def size(n: float | None) -> str:
    """1536 -> "1.5 KiB"; None -> "n/a"."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float | None) -> str:
    """Clock style: "4:02", "1:02:03", "2d03h" from a day on; None -> "-"."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h >= 24:
        return f"{h // 24}d{h % 24:02d}h"
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
