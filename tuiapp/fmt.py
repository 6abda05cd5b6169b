"""Human-readable figures, shared by the CLI and the dashboard."""
from __future__ import annotations


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h >= 24:
        return f"{h // 24}d{h % 24:02d}h"
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def number(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 1e-3:
        return f"{x:.{max(1, digits - 2)}e}"
    return f"{x:.{digits}g}"


def rate(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x / 1000:.1f}k {unit}"
    return f"{x:.2f} {unit}" if x < 10 else f"{x:.0f} {unit}"


def size(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def bar(fraction: float, width: int) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    return "#" * filled + "-" * (width - filled)


def coarse_duration(seconds: float | None) -> str:
    """Minutes resolution ("7m", "1h05m", "2d03h"): for tables, so a running clock repaints once a minute."""
    if seconds is None:
        return "-"
    m = int(seconds) // 60
    if m < 60:
        return f"{m}m" if m else "<1m"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h < 24 else f"{h // 24}d{h % 24:02d}h"
