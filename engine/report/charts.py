"""Line charts for reports: plain text for terminals and SVG for files. No plotting library needed.

A series is (label, [(x, y), ...]). Non-finite y values (a NaN loss) are left out of the scale and drawn as
a gap. The y-range comes from all finite points, so a first loss of 10 does not squash the rest: with
`robust=True` the top is capped at the 98th percentile of the values past the first 5 %.
"""
from __future__ import annotations

import math
from html import escape

MARKERS = "*o+x#@"
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2")


def _finite(points):
    return [(x, y) for x, y in points if x is not None and y is not None and math.isfinite(y)]


def bounds(series, robust: bool = True, log: bool = False):
    xs, ys = [], []
    for _, pts in series:
        pts = _finite(pts)
        if log:
            pts = [(x, y) for x, y in pts if y > 0]
        xs += [x for x, _ in pts]
        body = pts[len(pts) // 20:] if robust and len(pts) >= 20 else pts
        ys += [y for _, y in body]
    if not xs or not ys:
        return None
    ys.sort()
    lo, hi = ys[0], ys[min(len(ys) - 1, int(len(ys) * 0.98))] if robust and len(ys) >= 50 else ys[-1]
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):   # a flat line (a constant learning rate): a narrow band around it
        pad = abs(hi) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    return x0, x1, lo, hi


def text_chart(series, width: int = 64, height: int = 10, title: str = "", x_label: str = "step",
               log: bool = False) -> list[str]:
    """A chart drawn with one marker character per series; the first series gets '*'."""
    b = bounds(series, log=log)
    if b is None:
        return [f"{title}: no data"] if title else ["no data"]
    x0, x1, lo, hi = b
    grid = [[" "] * width for _ in range(height)]
    for i, (_, pts) in enumerate(series):
        mark = MARKERS[i % len(MARKERS)]
        for x, y in _finite(pts):
            if log:
                if y <= 0:
                    continue
                y = math.log10(y)
            col = round((x - x0) / (x1 - x0) * (width - 1))
            row = round((hi - min(max(y, lo), hi)) / (hi - lo) * (height - 1))
            grid[row][col] = mark
    fmt = (lambda v: f"{10 ** v:.3g}") if log else (lambda v: f"{v:.4g}")
    labels = {0: fmt(hi), height - 1: fmt(lo), (height - 1) // 2: fmt((hi + lo) / 2)}
    axis_w = max(len(v) for v in labels.values())
    out = [title] if title else []
    for r, row in enumerate(grid):
        out.append(f"{labels.get(r, ''):>{axis_w}} |{''.join(row)}")
    out.append(" " * axis_w + " +" + "-" * width)
    left, right = _num(x0), _num(x1)
    out.append(" " * (axis_w + 2) + left + " " * max(1, width - len(left) - len(right) - len(x_label) - 2)
               + f"{right} {x_label}")
    if len(series) > 1 or series[0][0]:
        out.append(" " * (axis_w + 2) + "   ".join(f"{MARKERS[i % len(MARKERS)]} {label}"
                                                   for i, (label, _) in enumerate(series)))
    return out


def svg_chart(series, width: int = 720, height: int = 300, title: str = "", x_label: str = "step",
              y_label: str = "", log: bool = False, dots: set | None = None) -> str:
    """A standalone SVG line chart with axes, ticks and a legend. dots: labels drawn as points, not lines."""
    dots = dots or set()
    left, right, top, bottom = 64, 16, 28 if title else 12, 42
    pw, ph = width - left - right, height - top - bottom
    b = bounds(series, log=log)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        parts.append(f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>')
    if b is None:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "\n".join(parts)
    x0, x1, lo, hi = b

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        if log:
            y = math.log10(y)
        return top + (hi - min(max(y, lo), hi)) / (hi - lo) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>')
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = top + ph - ph * i / 4
        label = f"{10 ** v:.3g}" if log else f"{v:.4g}"
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        xv = x0 + (x1 - x0) * i / 4
        xx = left + pw * i / 4
        parts.append(f'<text x="{xx:.1f}" y="{top + ph + 16}" text-anchor="middle">{_num(xv)}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text x="14" y="{top + ph / 2}" transform="rotate(-90 14 {top + ph / 2})" '
                     f'text-anchor="middle">{escape(y_label)}</text>')
    legend_x = left + 8
    for i, (label, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = [(x, y) for x, y in _finite(pts) if not log or y > 0]
        if label in dots:
            for x, y in pts:
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}"/>')
        else:
            for run in _runs(pts):
                coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{coords}"/>')
        if label:
            parts.append(f'<rect x="{legend_x}" y="{top + 6}" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text x="{legend_x + 14}" y="{top + 15}">{escape(label)}</text>')
            legend_x += 24 + 7 * len(label)
    parts.append("</svg>")
    return "\n".join(parts)


def _runs(points):
    """Consecutive points (a single point becomes a tiny segment so it still shows)."""
    if len(points) == 1:
        x, y = points[0]
        return [[(x, y), (x, y)]]
    return [points] if points else []


def _num(x: float) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.3g}k"
    return f"{x:.0f}" if float(x).is_integer() or abs(x) >= 10 else f"{x:.3g}"
