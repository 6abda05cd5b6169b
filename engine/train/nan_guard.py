"""The NaN/inf loss guard: a run whose loss stops being a number is stopped before the weights are.

Every micro-batch's loss is checked as it comes out of training_step (a flag tensor, so no extra device
sync). The decision is made in `on_pre_optimizer_step`, i.e. after the window's backward passes and BEFORE
`optimizer.step()`: the weights, optimizer state and LR schedule are still those of the last good step.

    training.on_nan = "stop" (default)   save a resumable checkpoint of that last good step (unless one
                                          exists), write a `log` error with code "nan_loss", and end the run
                                          failed with a hint (NanLoss; engine/train/main.py writes `end`
                                          with reason "nan_loss")
    training.on_nan = "warn"              the same log event (a warning, once per run) and the notification;
                                          training goes on. Use it where the optimizer skips such steps
                                          itself (fp16 with a loss scaler) or when you want to watch.

Test hook: TUNETOP_FAULT_NAN_STEP=N (engine/train/faults.py, with the others) makes step N's loss NaN.

Light at import time (main.py imports NanLoss before torch is loaded): torch and transformers are imported
inside `install`.
"""
from __future__ import annotations

import os

from ..errors import TunetopError
from .faults import NAN_STEP as FAULT_NAN_STEP
HINT = ("lower training.learning_rate (or raise warmup_ratio), check the data for empty or broken rows, and "
        "prefer bf16 to fp16 (fp16 overflows above 65504); `tunetop resume RUN` continues from the last good step, "
        'or set training.on_nan = "warn" to train on')


class NanLoss(TunetopError):
    exit_code = 1

    def __init__(self, message: str, step: int, last_good: int, hint: str = HINT):
        super().__init__(message, hint)
        self.step = step
        self.last_good = last_good


def fault_step() -> int | None:
    value = os.environ.get(FAULT_NAN_STEP, "").strip()
    return int(value) if value.isdigit() else None


def install(trainer, writer, mode: str = "stop"):
    """Wrap the trainer's training_step to watch the loss and add the deciding callback. Returns it."""
    import torch
    from transformers import TrainerCallback

    class NanGuard(TrainerCallback):
        def __init__(self):
            self.bad = None              # a bool tensor: some micro-batch of this window was not finite
            self.warned = 0
            self.fault = fault_step()
            self.hook = None

        def observe(self, loss):
            if torch.is_tensor(loss):
                flag = ~torch.isfinite(loss.detach()).all()
                self.bad = flag if self.bad is None else (self.bad | flag)
            return loss

        def on_step_begin(self, args, state, control, **kwargs):
            if self.fault is not None and state.global_step + 1 == self.fault and self.hook is None:
                self.fault = None
                self.hook = _arm_nan(trainer.model)

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if self.hook is not None:
                self.hook.remove()
                self.hook = None
            bad, self.bad = self.bad, None
            if bad is None or not bool(bad):
                return
            step, good = state.global_step + 1, state.global_step
            if mode == "warn":
                self.warned += 1
                if self.warned == 1:
                    _log(trainer, writer, "warning", step, f"step {step}: the loss is NaN or infinite; training goes "
                         'on (training.on_nan = "warn"); later steps may be NaN too')
                return
            trainer.model.zero_grad(set_to_none=True)
            saved = _checkpoint_last_good(trainer, state, control)
            where = (f"checkpoint-{good} holds step {good}, the last good one" if saved
                     else "no step finished before it, so there is no checkpoint")
            message = f"step {step}: the loss is NaN or infinite; the run stopped before the optimizer step ({where})"
            _log(trainer, writer, "error", step, message)
            raise NanLoss(message, step, good)

    guard = NanGuard()
    original = trainer.training_step

    def training_step(model, inputs, num_items_in_batch=None):
        return guard.observe(original(model, inputs, num_items_in_batch))

    # An instance attribute shadows the method: the loop's self.training_step(...) comes through here.
    trainer.training_step = training_step
    trainer.add_callback(guard)
    return guard


def _checkpoint_last_good(trainer, state, control) -> bool:
    """Save checkpoint-<last good step> (weights not yet touched by the NaN window), unless it exists."""
    from .. import rundir
    good = state.global_step
    if good <= 0:
        return False
    run_dir = getattr(trainer, "tt_run_dir", None)
    last = rundir.last_checkpoint(run_dir) if run_dir is not None else None
    if last is not None and last.name == f"checkpoint-{good}":
        return True
    trainer._save_checkpoint(trainer.model, trial=None)
    trainer.control = trainer.callback_handler.on_save(trainer.args, state, control)   # the checkpoint event
    return True


def _log(trainer, writer, level: str, step: int, message: str) -> None:
    print(f"nan guard: {message}", flush=True)
    if writer is not None and trainer.is_world_process_zero():
        writer.write("log", level=level, code="nan_loss", step=step, message=message)


def _arm_nan(model):
    """Make this step's loss NaN the way a divergence does: from the activations, so gradients are NaN too."""
    norms = [m for m in model.modules() if type(m).__name__.endswith(("RMSNorm", "LayerNorm"))]
    target = norms[-1] if norms else model

    def poison(module, args, output):
        if isinstance(output, tuple):
            return (output[0] * float("nan"), *output[1:])
        return output * float("nan")

    return target.register_forward_hook(poison)
