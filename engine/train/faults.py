"""Test fault hooks: every TUNETOP_FAULT_* environment variable the engine understands, in one place.

They exist so that tests (and anyone checking a rig) can make the real engine fail the way a real machine
does: out of memory at a chosen moment, killed in the middle of a checkpoint, a full disk, a slow step.
Unset, every hook does nothing; reading them costs one environment lookup.

Out of memory (the backoff tests):

  TUNETOP_FAULT_OOM_TOKENS=N       every training forward over more than N tokens (rows x padded length)
                                   raises torch.OutOfMemoryError, as a GPU that is too small would.
  TUNETOP_FAULT_OOM_EVAL_TOKENS=N  the same for evaluation forwards.
  TUNETOP_FAULT_OOM_STEPS=3,7:forward
                                   one OOM at each listed optimizer step, on its last micro-batch, in the
                                   backward by default (after part of the gradients were written) or in
                                   the forward; once per step and process. STEP:always fails every
                                   attempt at that step (the ladder runs out).
  TUNETOP_FAULT_OOM_RANK=R         limits the step faults and TUNETOP_FAULT_OOM_TOKENS to rank R (a
                                   smaller GPU on one rank).
  TUNETOP_FAULT_OOM_OPTIMIZER=6    an OOM inside the optimizer step of step 6 (not retryable in-step:
                                   the engine relaunches itself); only in a process that was not relaunched.

Crashes, disks and clocks (the fault-injection tests, tests/test_faults_engine.py):

  TUNETOP_FAULT_KILL_AT=POINT[@STEP][,...]
                                   the engine SIGKILLs itself (no cleanup, no `end` event: a power cut) when
                                   it reaches POINT, optionally only in the checkpoint of global step STEP.
  TUNETOP_FAULT_ENOSPC_AT=POINT[@STEP][,...]
                                   raises OSError(ENOSPC, "No space left on device") at POINT instead, for
                                   machines where a small tmpfs cannot be mounted.
  TUNETOP_FAULT_SLOW_STEP_S=S[@STEP]
                                   sleeps S seconds at the end of every optimizer step (or only STEP): a
                                   stalled run whose heartbeat is still alive.

Loss (the NaN guard, engine/train/nan_guard.py):

  TUNETOP_FAULT_NAN_STEP=N         the loss of optimizer step N is NaN: the output of the model's last norm
                                   layer is multiplied by NaN during that step, so the gradients are NaN too,
                                   as in a real divergence. Once per process.

  The points, in the order a save reaches them (engine/train/checkpointing.py):

    checkpoint:model          the adapter (or weights) is written into checkpoints/.tmp-checkpoint-N/
    checkpoint:optimizer      optimizer.pt and scheduler.pt are written
    checkpoint:rng            the RNG state is written
    checkpoint:trainer_state  trainer_state.json is written
    checkpoint:backoff        tunetop_backoff.json is written (every file is in the temporary folder)
    checkpoint:before_rename  every file fsynced; the folder is not yet checkpoint-N
    checkpoint:before_marker  renamed to checkpoint-N; the COMPLETE marker is not yet written
    checkpoint:done           the marker is written; older checkpoints not yet rotated away
    output:model              the final adapter/ (or model/) weights written into .tmp-adapter/
    output:tokenizer          the tokenizer written beside them
    output:before_rename      every file fsynced; not yet renamed to adapter/ (or model/)
    output:done               the output is in place; the `end` event is not yet written
    merge:before_rename       merged/ is complete under .tmp-merged/; not yet renamed

The names of the OOM hooks are also exported by engine/train/backoff.py (FAULT_TOKENS, ...), which the
backoff tests use.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import time

OOM_TOKENS = "TUNETOP_FAULT_OOM_TOKENS"
OOM_EVAL_TOKENS = "TUNETOP_FAULT_OOM_EVAL_TOKENS"
OOM_STEPS = "TUNETOP_FAULT_OOM_STEPS"
OOM_OPTIMIZER = "TUNETOP_FAULT_OOM_OPTIMIZER"
OOM_RANK = "TUNETOP_FAULT_OOM_RANK"
KILL_AT = "TUNETOP_FAULT_KILL_AT"
ENOSPC_AT = "TUNETOP_FAULT_ENOSPC_AT"
SLOW_STEP_S = "TUNETOP_FAULT_SLOW_STEP_S"
NAN_STEP = "TUNETOP_FAULT_NAN_STEP"

ALL = (OOM_TOKENS, OOM_EVAL_TOKENS, OOM_STEPS, OOM_OPTIMIZER, OOM_RANK, KILL_AT, ENOSPC_AT, SLOW_STEP_S, NAN_STEP)


def env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else None


# -- crashes and full disks at named points ---------------------------------------------------------------

def _matches(name: str, point: str, step: int | None) -> bool:
    for item in os.environ.get(name, "").split(","):
        want, _, at = item.strip().partition("@")
        if want == point and (not at or (at.isdigit() and step is not None and int(at) == step)):
            return True
    return False


def reached(point: str, step: int | None = None) -> None:
    """Called by the engine at each named point (see the table above). Kills or raises when a hook asks."""
    if _matches(KILL_AT, point, step):
        print(f"fault hook: {KILL_AT} kills the engine at {point}" + (f" (step {step})" if step else ""),
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)   # not reached: SIGKILL is not deliverable late
    if _matches(ENOSPC_AT, point, step):
        raise OSError(errno.ENOSPC, f"No space left on device (simulated by {ENOSPC_AT} at {point})")


def slow_step(step: int) -> None:
    raw = os.environ.get(SLOW_STEP_S, "").strip()
    if not raw:
        return
    seconds, _, at = raw.partition("@")
    if at and (not at.isdigit() or int(at) != step):
        return
    try:
        time.sleep(max(0.0, float(seconds)))
    except ValueError:
        pass


# -- out of memory ---------------------------------------------------------------------------------------

def oom_token_limit(training: bool) -> int | None:
    return env_int(OOM_TOKENS if training else OOM_EVAL_TOKENS)


def oom_steps() -> dict[int, str]:
    """TUNETOP_FAULT_OOM_STEPS parsed: step -> "forward" | "backward" | "always"."""
    out = {}
    for item in os.environ.get(OOM_STEPS, "").split(","):
        step, _, phase = item.strip().partition(":")
        if step.isdigit():
            out[int(step)] = phase if phase in ("forward", "backward", "always") else "backward"
    return out


class OOMFaultsMixin:
    """The trainer side of the OOM hooks: raise from compute_loss as a GPU that is too small would.

    Sits between TunetopTrainer and SFTTrainer in the class hierarchy; `_faults` (step -> phase) and
    `_fired` are plain attributes so in-process tests can set them directly.
    """

    def _init_faults(self, relaunched: bool) -> None:
        """`relaunched`: this process is the engine re-executed after an OOM in the optimizer step, where
        the optimizer fault must not fire again (the trainer knows; this module imports nothing of it)."""
        self._fired: set[int] = set()
        self._faults = oom_steps()
        step = env_int(OOM_OPTIMIZER)
        if step and not relaunched:
            self.add_callback(optimizer_fault(step))

    def compute_loss(self, model, inputs, *args, **kwargs):
        import torch
        ids = inputs["input_ids"]
        limit = oom_token_limit(model.training)
        rank = env_int(OOM_RANK)
        if limit is not None and ids.numel() > limit and (rank is None or rank == self.args.process_index):
            raise torch.OutOfMemoryError(
                f"simulated by {OOM_TOKENS if model.training else OOM_EVAL_TOKENS}={limit}: chunk of "
                f"{ids.shape[0]} x {ids.shape[1]} = {ids.numel()} tokens")
        handle = None
        inject = self._injected_fault(model)
        if inject == "forward":
            raise torch.OutOfMemoryError(f"simulated by {OOM_STEPS}: step {self.state.global_step + 1}, forward")
        if inject == "backward":
            handle = arm_backward_fault(model, self.state.global_step + 1)
        try:
            return super().compute_loss(model, inputs, *args, **kwargs)
        finally:
            if handle is not None:
                handle.remove()

    def _injected_fault(self, model) -> str | None:
        if not self._faults or not model.training or self._probing or self._window is None:
            return None
        rank = env_int(OOM_RANK)
        if rank is not None and rank != self.args.process_index:
            return None
        step = self.state.global_step + 1
        if step in self._faults and step not in self._fired and self._mb_index == len(self._window) - 1:
            if self._faults[step] == "always":
                return "forward"          # a step that never fits: every attempt fails
            self._fired.add(step)
            return self._faults[step]
        return None


def optimizer_fault(step: int):
    """A callback raising an OOM inside the optimizer step of `step` (TUNETOP_FAULT_OOM_OPTIMIZER)."""
    import torch
    from transformers import TrainerCallback

    class FaultInOptimizerStep(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if state.global_step + 1 == step:
                raise torch.OutOfMemoryError(f"simulated by {OOM_OPTIMIZER}={step}: optimizer step")

    return FaultInOptimizerStep()


def arm_backward_fault(model, step: int):
    """Raise an OOM in the backward pass once the gradients of the upper layers are written: a hook on the
    first decoder layer's output fires only after everything above it has been differentiated."""
    import torch
    layer = next((m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")), None)
    if layer is None:
        return None

    def raise_oom(grad):
        raise torch.OutOfMemoryError(f"simulated by {OOM_STEPS}: step {step}, backward")

    def on_forward(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(hidden) and hidden.requires_grad:
            hidden.register_hook(raise_oom)

    return layer.register_forward_hook(on_forward)
