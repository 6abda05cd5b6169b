"""Out-of-memory backoff: the state, the ladder, the messages, and the relaunch (light: no torch at import).

How it works (the heavy parts live in trainer.py, backoff_split.py, eval_backoff.py and probe.py):

* The dataloader's micro-batch (``micro_batch`` rows) and ``grad_accum`` never change during a run. On an
  out-of-memory error inside a training step, the same micro-batch is run again as ``split`` row-chunks,
  each its own forward and backward with the window's ``num_items_in_batch``; their gradients sum to the
  unsplit one (docs/facts.md, "OOM backoff: facts"). So the effective batch, sampler order, LR schedule and
  checkpoints are untouched. Users see the effective figures: micro-batch ``ceil(micro_batch / split)``
  and accumulation ``grad_accum x split``.
* The ladder, one rung per out-of-memory error, each rung a ``backoff`` event: double ``split`` (down to
  one row per pass); turn on gradient checkpointing; halve max_seq_len when the profile allows it
  (``training.allow_shorter_seq_len``); stop (``OOMExhausted``) with a resumable checkpoint of the last
  completed step and exit status ``EXIT_OOM``.
* An out-of-memory error that cannot be retried inside the step (in the optimizer step, while saving, or
  when memory did not come back after a failed attempt) becomes a ``RelaunchRequest``: the engine writes a
  ``backoff`` event and ``backoff.json`` in the run directory (the next rung: split x2, i.e. micro-batch/2
  and accumulation x2), then re-executes itself in place (``os.execv``: same pid, so the run stays "alive"
  for the dashboard) with ``--resume``. The relaunched engine resumes from the last checkpoint; the
  dataloader and sampler are unchanged, so the data order is the same.
* ``split`` and the rest of the state are saved in every checkpoint (``tunetop_backoff.json``), so a
  resumed run starts at the size that worked.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import TunetopError
from . import faults

EXIT_OOM = 3            # the ladder is exhausted: the run failed, its last completed step is resumable
EXIT_RELAUNCH = 75      # (EX_TEMPFAIL) relaunch wanted but not done here (TUNETOP_NO_RELAUNCH=1 or torchrun)
STATE_FILE = "tunetop_backoff.json"   # in each checkpoint-N/
OVERRIDE_FILE = "backoff.json"         # in the run directory: what a relaunch must start with
MAX_RELAUNCHES = 4
MAX_GROW_FAILURES = 3
SEQ_LEN_FLOOR = 16

# Test hooks (do nothing when unset): documented in faults.py, with every other TUNETOP_FAULT_* hook.
FAULT_TOKENS = faults.OOM_TOKENS
FAULT_EVAL_TOKENS = faults.OOM_EVAL_TOKENS
FAULT_STEPS = faults.OOM_STEPS
FAULT_OPTIMIZER = faults.OOM_OPTIMIZER
FAULT_RANK = faults.OOM_RANK
NO_RELAUNCH = "TUNETOP_NO_RELAUNCH"                # "1": exit with EXIT_RELAUNCH instead of re-executing
RELAUNCH_COUNT = "TUNETOP_RELAUNCH"                # set by the engine on the process it re-executes


env_int = faults.env_int


@dataclass
class BackoffState:
    micro_batch: int                 # rows per dataloader batch (per device); fixed for the run
    grad_accum: int                  # dataloader batches per optimizer step; fixed for the run
    split: int = 1                   # row-chunks each micro-batch is run as
    gradient_checkpointing: bool = False
    max_seq_len: int = 0             # tokens per row now (lowered only with allow_shorter_seq_len)
    profile_gradient_checkpointing: bool = False
    profile_max_seq_len: int = 0
    world_size: int = 1
    auto: bool = False               # micro_batch = "auto": split is chosen by the search before step 1
    floor_split: int = 1             # the probe showed smaller splits fail on the worst case: never grow below
    eval_split: int = 1
    clean_steps: int = 0             # optimizer steps since the last change
    grow_failures: int = 0
    growing: bool = False            # the current size is a grow-back attempt not yet confirmed by a clean step
    relaunches: int = 0
    step: int = 0                    # global step this state was recorded at
    history: list = field(default_factory=list)   # short words for what was tried, for the final message

    # -- what users see ------------------------------------------------------------------------------------
    @property
    def rows_per_pass(self) -> int:
        return math.ceil(self.micro_batch / self.split)

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def settings(self) -> dict:
        """The effective configuration (what `before`/`after` of a backoff event hold)."""
        return {"micro_batch": self.rows_per_pass, "grad_accum": self.grad_accum * self.split,
                "gradient_checkpointing": self.gradient_checkpointing, "max_seq_len": self.max_seq_len}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "BackoffState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def adopt(self, saved: "BackoffState") -> None:
        """Take over what a checkpoint (or a relaunch) says worked, converted to this run's micro-batch."""
        rows = max(1, math.ceil(saved.micro_batch / max(1, saved.split)))
        self.split = min(self.micro_batch, max(1, math.ceil(self.micro_batch / rows)))
        self.floor_split = min(self.split, max(1, saved.floor_split))
        self.gradient_checkpointing = self.gradient_checkpointing or saved.gradient_checkpointing
        if saved.max_seq_len and (not self.max_seq_len or saved.max_seq_len < self.max_seq_len):
            self.max_seq_len = saved.max_seq_len
        self.eval_split = max(self.eval_split, saved.eval_split)
        self.grow_failures, self.relaunches = saved.grow_failures, saved.relaunches
        self.history = list(saved.history)


# -- the ladder --------------------------------------------------------------------------------------------

@dataclass
class Rung:
    action: str          # "split" | "gradient_checkpointing" | "max_seq_len" | "exhausted"
    note: str = ""       # why a rung was skipped (e.g. the split was refused), for the message


def next_rung(state: BackoffState, *, max_split: int, refusal: str | None, allow_shorter: bool) -> Rung:
    """Apply the next rung of the ladder to `state` (in place) and say which it was."""
    note = ""
    if refusal:
        note = f"the micro-batch was not split: {refusal}"
    elif state.split < max_split:
        state.split = min(state.split * 2, max_split)
        state.history.append(f"micro-batch {state.rows_per_pass}")
        return Rung("split")
    if not state.gradient_checkpointing:
        state.gradient_checkpointing = True
        state.history.append("gradient checkpointing")
        return Rung("gradient_checkpointing", note)
    floor = max(SEQ_LEN_FLOOR, state.profile_max_seq_len // 8)
    if allow_shorter and state.max_seq_len // 2 >= floor:
        state.max_seq_len //= 2
        state.history.append(f"max_seq_len {state.max_seq_len}")
        return Rung("max_seq_len", note)
    return Rung("exhausted", note)


def grow_back(state: BackoffState, after: int) -> str | None:
    """At the start of a step: undo one rung when `after` clean steps have passed. Returns the action."""
    if after <= 0 or state.growing or state.grow_failures >= MAX_GROW_FAILURES:
        return None
    if state.clean_steps < after * (2 ** state.grow_failures):
        return None
    if state.split > state.floor_split:
        state.split = max(state.floor_split, state.split // 2)
        action = "split"
    elif state.gradient_checkpointing and not state.profile_gradient_checkpointing:
        state.gradient_checkpointing = False
        action = "gradient_checkpointing"
    else:
        return None
    state.growing, state.clean_steps = True, 0
    return action


# -- messages ----------------------------------------------------------------------------------------------

def gib(n: int | float | None) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "?"


def change_text(before: dict, after: dict, effective: int) -> str:
    parts = []
    if before["micro_batch"] != after["micro_batch"] or before["grad_accum"] != after["grad_accum"]:
        parts.append(f"micro-batch {before['micro_batch']} -> {after['micro_batch']}, accumulation "
                     f"{before['grad_accum']} -> {after['grad_accum']}, effective batch {effective} kept")
    if before["gradient_checkpointing"] != after["gradient_checkpointing"]:
        parts.append(f"gradient checkpointing {'on' if after['gradient_checkpointing'] else 'off'} "
                     f"(micro-batch {after['micro_batch']}, accumulation {after['grad_accum']}, "
                     f"effective batch {effective} kept)")
    if before["max_seq_len"] != after["max_seq_len"]:
        parts.append(f"max_seq_len {before['max_seq_len']} -> {after['max_seq_len']} (longer rows are cut "
                     "from now on: training.allow_shorter_seq_len = true)")
    return "; ".join(parts) or "no change"


def step_label(step: int) -> str:
    return f"step {step}" if step > 0 else "before step 1"


def oom_text(memory: int | None, where: str = "") -> str:
    on = where == "another rank" or where.startswith(("rank ", "ranks "))
    inside = f" on {where}" if on else f" in {where}" if where else ""
    return f"out of memory{inside}" + (f" ({gib(memory)} in use)" if memory else "")


# -- errors that end (or restart) the engine ------------------------------------------------------------

class OOMExhausted(TunetopError):
    """Every rung was tried; the message names them, the hint says what to change. Exit status EXIT_OOM."""

    exit_code = 1
    exit_status = EXIT_OOM


class RelaunchRequest(Exception):
    """Restart the engine on the same run directory with --resume; backoff.json says the new sizes."""

    exit_status = EXIT_RELAUNCH

    def __init__(self, run_dir: Path | None, message: str, relaunches: int):
        super().__init__(message)
        self.run_dir = run_dir
        self.relaunches = relaunches

    def execute(self, writer=None) -> int:
        """Re-execute the engine in place (same pid). Returns EXIT_RELAUNCH only when that is not possible
        or not wanted: under torchrun (each rank would restart alone) or with TUNETOP_NO_RELAUNCH=1."""
        if writer is not None:
            if self.run_dir is None or _no_relaunch():
                writer.write("end", status="failed", error=str(self),
                             hint=(f"`tunetop resume {self.run_dir.name}` continues from the last checkpoint at the "
                                   "smaller size saved in backoff.json" if self.run_dir else "relaunch the engine"))
            writer.close()
        if self.run_dir is None or _no_relaunch():
            return EXIT_RELAUNCH
        sys.stdout.flush()
        sys.stderr.flush()
        env = dict(os.environ, **{RELAUNCH_COUNT: str(self.relaunches)})
        # Faults injected by the test hooks belong to the first process: a relaunch replays steps.
        env.pop(FAULT_STEPS, None)
        os.execve(sys.executable, [sys.executable, "-m", "engine.train", str(self.run_dir), "--resume"], env)
        return EXIT_RELAUNCH  # not reached


def _no_relaunch() -> bool:
    return os.environ.get(NO_RELAUNCH, "") not in ("", "0") or int(os.environ.get("WORLD_SIZE", "1")) > 1


# -- files ---------------------------------------------------------------------------------------------------

def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_state(path: Path) -> BackoffState | None:
    try:
        return BackoffState.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def loader_batch(training) -> tuple[int, int]:
    """(rows per dataloader batch, accumulation) for a profile's training section. micro_batch = "auto"
    loads the whole effective batch per step (accumulation 1); the search before step 1 then picks how many
    row-chunks it runs as, which is the same arithmetic as micro-batch x accumulation."""
    if isinstance(training.micro_batch, int):
        return training.micro_batch, training.grad_accum
    effective = getattr(training, "effective_batch", 0) or 4 * training.grad_accum
    return effective, 1
