"""Trainer callbacks for several processes (engine/train/distributed_setup.py puts them in order)."""
from __future__ import annotations

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from .callbacks import memory_now


class StopAgreement(TrainerCallback):
    """After each optimizer step every rank learns whether any rank is stopping (a signal forwarded by the
    agent lands at slightly different moments on each rank; a guard may stop on one rank only) or saving,
    through one all-reduce of three flags, so all of them stop after the same step and save the same
    checkpoint; a rank going on alone would wait in the next step's collectives. Added last (attach), so it
    sees what every other callback decided."""

    def __init__(self, stop):
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):
        flags = torch.tensor([int(self.stop.requested), int(control.should_training_stop), int(control.should_save)],
                             device=args.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        requested, stopping, saving = (bool(x) for x in flags.tolist())
        if requested and not self.stop.requested:
            self.stop.requested = True
            self.stop.signal_name = self.stop.signal_name or "SIGTERM (on another rank)"
        if requested:
            control.should_save = True           # the resumable checkpoint of this step, as GracefulStop does
        control.should_training_stop = control.should_training_stop or stopping or requested
        control.should_save = control.should_save or saving
        return control


class RankMemory(TrainerCallback):
    """Every rank's memory at each logged step, gathered on rank 0 (an all_gather of a small dict; the Trainer
    calls on_log on every rank at the same step) and added to the `step` event as memory_ranks."""

    def __init__(self, writer, r):
        self.writer, self.r = writer, r

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" not in (logs or {}):
            return
        mine = {"rank": self.r.rank, **memory_now()}
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        if self.r.main_writer and hasattr(self.writer, "step_extra"):
            self.writer.step_extra = {"memory_ranks": everyone}


class NodeStart(TrainerCallback):
    """On a machine other than machine 0: its own run directory gets a `start` event too (the same facts),
    so `tunetop ls` there shows the run as running, not as failing to start."""

    def __init__(self, writer, events):
        self.writer, self.events = writer, events

    def on_train_begin(self, args, state, control, **kwargs):
        self.writer.write("start", total_steps=state.max_steps, resumed_from=state.global_step or None,
                          **self.events.start_info, main_node=False)
