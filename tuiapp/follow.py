"""Follow a run in a plain terminal (`tunetop run`, `tunetop watch`): a progress line plus every notable
event (evaluations, checkpoints, backoffs, warnings) and the final result."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from engine import rundir
from engine.events import EventTail

from . import fmt


def describe(e: dict) -> str | None:
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
            hint = f"\n  hint: {e['hint']}" if e.get("hint") else ""
            return f"failed: {e.get('error')}{hint}"
        loss = f", final loss {fmt.number(e.get('final_loss'))}" if e.get("final_loss") is not None else ""
        return f"{status}: step {e.get('step')}/{e.get('total_steps')}{loss} in {fmt.duration(e.get('runtime_s'))}" + (
            f"\n  {e['hint']}" if e.get("hint") else "")
    return None


def progress_line(state: rundir.RunState, width: int = 24) -> str:
    total = state.total_steps or 0
    frac = state.step / total if total else 0.0
    parts = [f"[{fmt.bar(frac, width)}] {state.step}/{total or '?'}",
             f"loss {fmt.number(state.loss)}", f"lr {fmt.number(state.lr, 3)}",
             fmt.rate(state.steps_per_s, "step/s"), fmt.rate(state.tokens_per_s, "tok/s"),
             f"ETA {fmt.duration(state.eta_s)}"]
    return "  ".join(parts)


def follow(run_dir: Path, out=sys.stdout, poll_s: float = 0.5, from_start: bool = True) -> rundir.RunState:
    """Print a run's progress until it ends (or its engine dies). Returns the final state.

    Ctrl+C leaves this loop (KeyboardInterrupt propagates to the caller); the run is not touched.
    """
    tty = out.isatty()
    state = rundir.RunState(run_id=run_dir.name, path=run_dir)
    tail = EventTail(run_dir / rundir.EVENTS)
    if not from_start:
        for e in tail.poll():
            state.apply(e)
    last_printed_step = -1
    drawn = False
    while True:
        rundir.refresh_alive(state)
        batch = tail.poll()
        for e in batch:
            state.apply(e)
            line = describe(e)
            if line:
                if drawn:
                    out.write("\r\033[K")
                    drawn = False
                out.write(line + "\n")
        if state.step != last_printed_step and state.last_step is not None:
            last_printed_step = state.step
            if tty:
                out.write("\r\033[K" + progress_line(state))
                drawn = True
            else:
                out.write(progress_line(state) + "\n")
        out.flush()
        if (state.ended and not state.active) or (not state.alive and not batch):
            # Dead without an end event: give the writer one more poll, then report.
            for e in tail.poll():
                state.apply(e)
                line = describe(e)
                if line:
                    out.write(("\n" if drawn else "") + line + "\n")
                    drawn = False
            if drawn:
                out.write("\n")
            if not state.ended and not state.alive:
                out.write(f"interrupted: the engine of {run_dir.name} is gone without finishing "
                          f"(killed, or the machine went down)\n  hint: `tunetop resume {run_dir.name}` continues "
                          "from the last checkpoint; `tunetop logs` shows what it printed\n")
            out.flush()
            return state
        time.sleep(poll_s)
