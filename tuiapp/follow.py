"""Follow a run in a plain terminal (`tunetop run`, `tunetop watch`): a progress line plus every notable
event (evaluations, checkpoints, backoffs, warnings) and the final result.

Following starts from the run's current state, read cheaply from the head and tail of events.jsonl
(engine/rundir.py), then tails the file from there: a long history is not replayed.

The progress line fits the terminal's width (redrawn in place, so it must never wrap). Fields, most
important first: step/total, ETA, status note (hung/stalled), loss, step/s, lr, tok/s, elapsed, and the
bar. When the line is too long, fields are dropped in this order: elapsed, tok/s, lr, step/s; then the bar
shrinks (24 -> 8 cells) and goes; then loss and the note shorten away. Step/total and ETA always stay.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from engine import rundir
from engine.errors import render_text
from engine.events import EventTail

from . import fmt

BAR_CELLS = (24, 16, 8)


def describe(e: dict, state: rundir.RunState | None = None) -> str | None:
    """One line for an event worth printing on its own line (steps go to the progress line)."""
    kind = e.get("type")
    if kind == "start":
        resumed = f", resumed at step {e['resumed_from']}" if e.get("resumed_from") else ""
        return (f"start: {e.get('method')} on {e.get('model')} ({e.get('device')}, {e.get('precision')}), "
                f"{e.get('total_steps')} steps, micro-batch {e.get('micro_batch')} x accumulation "
                f"{e.get('grad_accum')} = {e.get('effective_batch')}, {e.get('train_rows')} rows{resumed}")
    if kind == "eval":
        return f"eval: step {e.get('step')}, eval loss {fmt.number(e.get('eval_loss'))}"
    if kind == "checkpoint":
        return f"checkpoint: step {e.get('step')} -> {e.get('path')}"
    if kind == "backoff":
        return f"backoff: {e.get('message') or e.get('reason')}"
    if kind == "log":
        level = e.get("level", "info")
        return f"{level}: {e.get('message')}" if level != "info" else str(e.get("message"))
    if kind == "end":
        status = e.get("status")
        if status == "failed":
            return render_text(_Failure(str(e.get("error")), str(e.get("hint") or "")), prefix="failed: ")
        loss = f", final loss {fmt.number(e.get('final_loss'))}" if e.get("final_loss") is not None else ""
        # Elapsed: the run's training time over all its segments (one definition: RunState.elapsed).
        took = state.elapsed if state is not None and state.elapsed is not None else e.get("runtime_s")
        return f"{status}: step {e.get('step')}/{e.get('total_steps')}{loss} in {fmt.duration(took)}" + (
            f"\n  {e['hint']}" if e.get("hint") else "")
    return None


class _Failure(Exception):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def progress_line(state: rundir.RunState, width: int | None = None) -> str:
    """The progress line, fitted to `width` columns (None: every field, full bar)."""
    total = state.total_steps or 0
    frac = state.step / total if total else 0.0
    counter = f"{state.step}/{total or '?'}"
    eta = f"ETA {fmt.duration(state.eta_s)}"
    status = state.status
    note = f"{status.upper()}: {state.note}" if status in ("hung", "stalled") and state.note else (
        status.upper() if status in ("hung", "stalled") else "")
    loss = f"loss {fmt.number(state.loss)}"
    optional = [("step/s", fmt.rate(state.steps_per_s, "step/s")), ("lr", f"lr {fmt.number(state.lr, 3)}"),
                ("tok/s", fmt.rate(state.tokens_per_s, "tok/s")),
                ("elapsed", f"elapsed {fmt.duration(state.elapsed)}")]
    drop_order = ["elapsed", "tok/s", "lr", "step/s"]

    def build(cells: int | None, keep: set[str], with_loss: bool = True, with_note: str = note) -> str:
        head = f"[{fmt.bar(frac, cells)}] {counter}" if cells else counter
        parts = [head, eta] + ([with_note] if with_note else []) + ([loss] if with_loss else [])
        parts += [text for key, text in optional if key in keep]
        return "  ".join(parts)

    keep = {key for key, _ in optional}
    if width is None:
        return build(BAR_CELLS[0], keep)
    for key in [None, *drop_order]:
        if key:
            keep.discard(key)
        line = build(BAR_CELLS[0], keep)
        if len(line) <= width:
            return line
    for cells in (*BAR_CELLS[1:], 0):
        line = build(cells, keep)
        if len(line) <= width:
            return line
    for line in (build(0, keep, with_loss=False), build(0, keep, False, status.upper() if note else ""),
                 build(0, keep, False, "")):
        if len(line) <= width:
            return line
    return line[:max(1, width)]


def _columns(out) -> int | None:
    """The terminal's width now (it may be resized while we follow); None when not a terminal."""
    try:
        if not out.isatty():
            return None
    except (AttributeError, ValueError, OSError):
        return None
    # The terminal's own size first: a COLUMNS variable inherited from elsewhere (a multiplexer started
    # from a wider shell) would make the line wrap. One column spare: a line that fills the last column
    # leaves the cursor in "pending wrap" state.
    try:
        columns = os.get_terminal_size(out.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return (columns or shutil.get_terminal_size((80, 24)).columns) - 1


def follow(run_dir: Path, out=sys.stdout, poll_s: float = 0.5) -> rundir.RunState:
    """Print a run's progress until it ends (or its engine dies). Returns the final state.

    Ctrl+C leaves this loop (KeyboardInterrupt propagates to the caller); the run is not touched.
    """
    tty = out.isatty()
    state = rundir.read_state(run_dir)
    tail = EventTail(run_dir / rundir.EVENTS)
    tail.offset = state.read_offset
    if state.start_event:
        out.write((describe(state.start_event) or "") + "\n")
    last_printed, drawn, said_missing, printed_end = None, False, False, False
    while True:
        rundir.refresh_alive(state)
        batch = tail.poll()
        for e in batch:
            state.apply(e)
            line = describe(e, state)
            printed_end = printed_end or e.get("type") == "end"
            if line:
                if drawn:
                    out.write("\r\033[K")
                    drawn = False
                out.write(line + "\n")
        if not said_missing and state.alive and not (run_dir / rundir.EVENTS).exists():
            said_missing = True
            out.write(("\r\033[K" if drawn else "") + f"note: {run_dir / rundir.EVENTS} is gone; the engine is "
                      "still alive but its progress cannot be shown\n")
            drawn = False
        shown = (state.step, state.status)
        if state.last_step is not None and not (state.ended and not state.active):
            if tty and (shown != last_printed or not drawn):
                # Redrawn after every event line too (printing one erases it), so it is always on screen.
                out.write("\r\033[K" + progress_line(state, _columns(out)))
                drawn = True
            elif not tty and shown != last_printed:
                out.write(progress_line(state) + "\n")
            last_printed = shown
        out.flush()
        if (state.ended and not state.active) or (not state.alive and not batch):
            return _finish(run_dir, state, tail, out, drawn, printed_end)
        time.sleep(poll_s)


def _finish(run_dir: Path, state: rundir.RunState, tail: EventTail, out, drawn: bool,
            printed_end: bool) -> rundir.RunState:
    # Dead without an end event: give the writer one more poll, then report.
    for e in tail.poll():
        state.apply(e)
        line = describe(e, state)
        printed_end = printed_end or e.get("type") == "end"
        if line:
            out.write(("\n" if drawn else "") + line + "\n")
            drawn = False
    if state.ended and not printed_end:   # it had ended before we started following
        out.write(("\n" if drawn else "") + (describe(state.ended, state) or "") + "\n")
        drawn = False
    if drawn:
        out.write("\n")
    if not state.ended and not state.alive and state.status != "completed":
        out.write(render_text(_Failure(
            f"interrupted: the engine of {run_dir.name} is gone without finishing (killed, or the machine "
            "went down)", f"`tunetop resume {run_dir.name}` continues from the last checkpoint; "
            "`tunetop logs` shows what it printed"), prefix="") + "\n")
    out.flush()
    return state
