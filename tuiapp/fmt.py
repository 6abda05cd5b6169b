"""Presentation, shared by the CLI and the dashboard: durations, numbers, rates, byte sizes, run statuses
(glyph and theme colour), model short names, and events as readable lines. No Textual here: colours are
theme variable names, resolved by the widgets."""
from __future__ import annotations

import time
from pathlib import Path

from engine.units import duration, size  # noqa: F401 (the one wording; used across tuiapp as fmt.*)

NA = "n/a"

# Status: a glyph readable without colour, and the theme colour. hung and stalled are alive but not
# progressing (engine/runstate.py says when): warning colours, so they stand out from running.
STATUS = {
    "running": ("▶", "$success"), "starting": ("…", "$accent"), "completed": ("✓", "$primary"),
    "stopped": ("■", "$warning"), "failed": ("✗", "$error"), "interrupted": ("!", "$error"),
    "failed to start": ("✗", "$error"), "hung": ("⏸", "$error"), "stalled": ("⧗", "$warning"),
}


def status_glyph(status: str) -> tuple[str, str]:
    """(glyph, theme colour) of a run status; unknown ones get "?" in muted text."""
    return STATUS.get(status, ("?", "$text-muted"))


def short_model(model: str | None, width: int = 24) -> str:
    """The last part of a path or hub id ("meta-llama/Llama-3.1-8B" -> "Llama-3.1-8B"), capped in width."""
    name = Path(model.rstrip("/")).name if model else "-"
    return name if len(name) <= width else name[: width - 1] + "…"


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


def gib(n: float | None, digits: int = 1) -> str:
    """Bytes as a bare GiB figure ("17.9"), for meters that print the unit once."""
    return NA if n is None else f"{n / (1 << 30):.{digits}f}"


def mem_pair(used: float | None, total: float | None) -> str:
    if used is None and total is None:
        return NA
    return f"{gib(used)}/{gib(total)} GiB"


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


# -- events as lines --------------------------------------------------------------------------------------

_CHANGE_LABELS = (("micro_batch", "micro-batch"), ("grad_accum", "accumulation"),
                  ("gradient_checkpointing", "checkpointing"), ("max_seq_len", "seq"))


def backoff_text(e: dict) -> str:
    """The change first ("micro-batch 8→4, accumulation 2→4"), then why: a cut line still shows what changed."""
    before = e.get("before") if isinstance(e.get("before"), dict) else {}
    after = e.get("after") if isinstance(e.get("after"), dict) else {}
    changes = [f"{label} {_on(before.get(k))}→{_on(after.get(k))}" for k, label in _CHANGE_LABELS
               if k in before and k in after and before.get(k) != after.get(k)]
    why = str(e.get("message") or e.get("reason") or "").strip()
    step = e.get("step", "?")
    where = "before step 1" if step == 0 else f"at step {step}"
    for prefix in (where + ": ", f"step {step}: "):
        why = why.removeprefix(prefix)       # the engine's message may begin with where it happened
    # Several processes: which rank ran out (the engine's message says so too; older or terse events may not),
    # and each rank's new micro-batch when they are not all the same.
    ranks = [r for r in e.get("ranks") or [] if isinstance(r, dict)] if isinstance(e.get("ranks"), list) else []
    oom = e.get("oom_ranks") if isinstance(e.get("oom_ranks"), list) else (
        [e["oom_rank"]] if isinstance(e.get("oom_rank"), int) else [])
    who = ""
    if oom and len(ranks) != 1:
        who = f"rank {oom[0]}" if len(oom) == 1 else "ranks " + ", ".join(map(str, oom))
        if who in why:
            who = ""
    sizes = {r.get("rank"): r.get("micro_batch") for r in ranks}
    apart = ", ".join(f"rank {k} {v}" for k, v in sizes.items()) if len(set(sizes.values())) > 1 else ""
    return f"backoff {where}: " + "; ".join(filter(None, [
        ", ".join(changes), f"out of memory on {who}" if who else "", why,
        f"micro-batch per rank: {apart}" if apart else ""]))


def _on(v) -> str:
    return {True: "on", False: "off"}.get(v, str(v)) if isinstance(v, bool) else str(v)


def event_line(e: dict) -> str | None:
    """One event as a line for the run panel's tail ("12:03:04 step 120/400 · loss 1.23 · ..."), or None for
    what is not worth a line. Library output (warnings, progress bars) stays in engine.log, out of the tail."""
    kind = e.get("type")
    t = e.get("t")
    clock = time.strftime("%H:%M:%S", time.localtime(t)) + " " if isinstance(t, (int, float)) else ""
    if kind == "step":
        parts = [f"step {e.get('step')}/{e.get('total_steps') or '?'}"]
        if isinstance(e.get("loss"), (int, float)):
            parts.append(f"loss {number(e['loss'])}")
        if isinstance(e.get("lr"), (int, float)):
            parts.append(f"lr {number(e['lr'], 2)}")
        if isinstance(e.get("grad_norm"), (int, float)):
            parts.append(f"grad {number(e['grad_norm'], 3)}")
        if isinstance(e.get("step_time"), (int, float)) and e["step_time"] > 0:
            parts.append(f"{e['step_time']:.2f} s/step")
        text = " · ".join(parts)
    elif kind == "eval":
        text = f"eval at step {e.get('step')} · loss {number(e.get('eval_loss'))}"
    elif kind == "start":
        resumed = e.get("resumed_from")
        where = " ".join(str(x) for x in (e.get("device"), e.get("precision")) if x)
        text = " · ".join(filter(None, [
            f"resumed from step {resumed}" if resumed else "started",
            f"{short_model(e.get('model'))} {e.get('method') or ''}".strip(),
            f"batch {e.get('micro_batch')}×{e.get('grad_accum')}" if e.get("micro_batch") else "", where]))
    elif kind == "backoff":
        text = "⚠ " + backoff_text(e)
    elif kind == "checkpoint":
        text = f"checkpoint at step {e.get('step')}"
    elif kind == "log":
        level = e.get("level") or "info"
        text = ("" if level == "info" else f"{level}: ") + str(e.get("message", "")).replace("\n", " ")
    elif kind == "end":
        status = e.get("status") or "?"
        text = f"{status} at step {e.get('step')}"
        if isinstance(e.get("final_loss"), (int, float)):
            text += f" · final loss {number(e['final_loss'])}"
        if e.get("error"):
            text += f" · {e['error']}" + (f" (hint: {e['hint']})" if e.get("hint") else "")
    else:
        return None
    return clock + text
