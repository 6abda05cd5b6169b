"""Several runs side by side: their curves (x by step or by tokens seen) and a table of the profile fields
that differ plus the final figures. Read from the run directories only."""
from __future__ import annotations

from pathlib import Path

from ..errors import TunetopError
from . import charts
from ..units import duration, size
from .render import _fmt
from .summary import RunSummary, flat_config, summarize

MAX_RUNS = 6
# Keys that differ between any two runs and say nothing about the training.
IGNORED = {"description", "output.runs_root"}


def load(run_dirs: list[Path]) -> list[RunSummary]:
    if len(run_dirs) < 2:
        raise TunetopError("compare needs at least two runs", "name two to six runs: `tunetop compare RUN RUN ...`")
    if len(run_dirs) > MAX_RUNS:
        raise TunetopError(f"compare shows at most {MAX_RUNS} runs, got {len(run_dirs)}",
                           "pick the runs that matter most")
    names = [Path(r).name for r in run_dirs]
    if len(set(names)) < len(names):
        raise TunetopError("the same run is named twice", "name each run once")
    return [summarize(Path(r)) for r in run_dirs]


def differing_fields(runs: list[RunSummary]) -> list[tuple[str, list[str]]]:
    flats = [flat_config(r.config) for r in runs]
    keys = sorted(set().union(*flats) - IGNORED)
    out = []
    for key in keys:
        values = [_show(f.get(key)) for f in flats]
        if len(set(values)) > 1:
            out.append((key, values))
    return out


def figures(runs: list[RunSummary]) -> list[tuple[str, list[str]]]:
    def peak(r):
        if r.peak_by_rank:
            return size(max(r.peak_by_rank.values())) + f" (max of {len(r.peak_by_rank)} ranks)"
        return size(r.peak_cuda) if r.peak_cuda else (f"{size(r.peak_rss)} RSS" if r.peak_rss else "-")
    return [
        ("status", [r.status for r in runs]),
        ("steps", [f"{r.step}/{r.total_steps or '?'}" for r in runs]),
        ("final loss", [_fmt(r.final_loss) for r in runs]),
        ("eval loss", [_fmt(r.final_eval_loss) for r in runs]),
        ("tokens/s", [f"{r.mean_tokens_per_s:,.0f}" if r.mean_tokens_per_s else "-" for r in runs]),
        ("peak memory", [peak(r) for r in runs]),
        ("wall time", [duration(r.wall_s) for r in runs]),
    ]


def table(runs: list[RunSummary]) -> list[tuple[str, list[str]]]:
    """Rows of (label, one value per run): the differing profile fields, then the figures."""
    diff = differing_fields(runs)
    return (diff or [("(profile)", ["same settings"] * len(runs))]) + figures(runs)


def curves(runs: list[RunSummary], x: str = "step", evals: bool = False):
    """(label, [(x, y)]) per run: train loss, or eval loss with evals=True. x: "step" or "tokens"."""
    out = []
    for i, r in enumerate(runs):
        points = r.eval_loss if evals else r.loss
        pts = [((p.step if x == "step" else p.tokens), p.value) for p in points]
        out.append((f"{i + 1} {r.run_id}", [(a, b) for a, b in pts if a is not None]))
    return out


def text(runs: list[RunSummary], x: str = "step", width: int = 100) -> str:
    out = [*charts.text_chart(curves(runs, x), width=max(20, width - 14), height=14, title="train loss",
                              x_label="step" if x == "step" else "tokens")]
    if any(r.eval_loss for r in runs):
        out += ["", *charts.text_chart(curves(runs, x, evals=True), width=max(20, width - 14), height=8,
                                       title="eval loss", x_label="step" if x == "step" else "tokens")]
    rows = table(runs)
    head = ["", *[f"{i + 1} {r.run_id}" for i, r in enumerate(runs)]]
    body = [[label, *values] for label, values in rows]
    widths = [max(len(str(row[c])) for row in [head, *body]) for c in range(len(head))]
    out.append("")
    for row in [head, *body]:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(out) + "\n"


def _show(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return ",".join(map(str, v))
    if isinstance(v, str) and ("/" in v) and len(v) > 30:
        return "…" + v[-29:]
    return str(v)
