"""Trainer callbacks: turn the Trainer's progress into events, and stop gracefully on a signal."""
from __future__ import annotations

import time
from collections import deque

import psutil
import torch
from transformers import TrainerCallback

from . import faults
from .stop import StopRequest


class GracefulStop(TrainerCallback):
    def __init__(self, stop: StopRequest):
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.requested:
            control.should_save = True           # a resumable checkpoint of this very step
            control.should_training_stop = True
        return control


class RunDirWatch(TrainerCallback):
    """At each step boundary: the slowed-step test hook, then stop if the run directory was deleted or moved
    (guard.py) before anything of this step (event, checkpoint) is written into it."""

    def __init__(self, guard):
        self.guard = guard

    def on_step_end(self, args, state, control, **kwargs):
        faults.slow_step(state.global_step)
        self.guard.check()
        return control


def memory_now() -> dict:
    mem = {"rss": psutil.Process().memory_info().rss}
    if torch.cuda.is_available():
        mem.update(cuda_allocated=torch.cuda.memory_allocated(), cuda_reserved=torch.cuda.memory_reserved(),
                   cuda_peak=torch.cuda.max_memory_allocated())
    return mem


class EventCallback(TrainerCallback):
    """Writes `step`, `eval` and `checkpoint` events (rank 0 only: the Trainer calls on_log on it alone).

    Speeds are measured here between optimizer steps (wall clock), not taken from the Trainer's
    averages, so they stay right across a resume. ETA uses the mean of the last 20 step times.
    """

    def __init__(self, writer, effective_batch: int):
        self.writer = writer
        self.effective_batch = effective_batch
        self.recent = deque(maxlen=20)
        self.last_end: float | None = None
        self.step_time: float | None = None
        self.tokens_at_log: int | None = None
        self.time_at_log: float | None = None
        self.start_info: dict = {}   # run, model and data facts for the `start` event

    def on_train_begin(self, args, state, control, **kwargs):
        # Written here, not earlier, because only now is the step count known (and restored on resume).
        if state.is_world_process_zero:
            self.writer.write("start", total_steps=state.max_steps, resumed_from=state.global_step or None,
                              **self.start_info)
        self.last_end = time.perf_counter()
        self.time_at_log = time.perf_counter()
        self.tokens_at_log = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.last_end is not None:
            self.step_time = now - self.last_end
            self.recent.append(self.step_time)
        self.last_end = now

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or not state.is_world_process_zero:
            return
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen
        span = now - (self.time_at_log or now)
        tokens_per_s = (tokens - (self.tokens_at_log or 0)) / span if span > 0 else None
        self.tokens_at_log, self.time_at_log = tokens, now
        mean = sum(self.recent) / len(self.recent) if self.recent else None
        remaining = max(0, state.max_steps - state.global_step)
        self.writer.write(
            "step", step=state.global_step, total_steps=state.max_steps, epoch=_round(state.epoch, 4),
            loss=logs.get("loss"), lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
            tokens_seen=tokens, step_time=_round(self.step_time, 4),
            samples_per_s=_round(self.effective_batch / mean, 3) if mean else None,
            tokens_per_s=_round(tokens_per_s, 1), eta_s=_round(remaining * mean, 1) if mean else None,
            memory=memory_now())

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics and "eval_loss" in metrics:
            self.writer.write("eval", step=state.global_step, eval_loss=metrics["eval_loss"])

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.writer.write("checkpoint", step=state.global_step,
                              path=f"checkpoints/checkpoint-{state.global_step}")


def _round(x, n):
    return round(x, n) if isinstance(x, (int, float)) else None
