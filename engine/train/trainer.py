"""tunetop's SFTTrainer: trl's trainer plus out-of-memory backoff that loses no step.

On an out-of-memory error inside a training step, the same micro-batch runs again as smaller row-chunks
(each its own forward and backward with the window's num_items_in_batch), so the gradient, the optimizer
steps, the LR schedule, the sampler order, the logged loss and metrics and the token counts are what they
would have been without the error. The ladder, the relaunch and the files are described in backoff.py;
the cutting of batches in backoff_split.py; the probe before step 1 (and micro_batch = "auto") in probe.py.

Test hooks (environment variables; they do nothing when unset):

  TUNETOP_FAULT_OOM_TOKENS=N       every training forward over more than N tokens (rows x padded length)
                                   raises torch.OutOfMemoryError, as a GPU that is too small would.
  TUNETOP_FAULT_OOM_EVAL_TOKENS=N  the same for evaluation forwards.
  TUNETOP_FAULT_OOM_STEPS=3,7:forward
                                   one OOM at each listed optimizer step, on its last micro-batch, in the
                                   backward by default (after part of the gradients were written) or in
                                   the forward; once per step and process. STEP:always fails every
                                   attempt at that step (the ladder runs out).
                                   TUNETOP_FAULT_OOM_RANK=R limits these step faults to rank R.
  TUNETOP_FAULT_OOM_OPTIMIZER=6    an OOM inside the optimizer step of step 6 (not retryable in-step:
                                   the engine relaunches itself); only in a process that was not relaunched.
"""
from __future__ import annotations

import copy
import os
from contextlib import contextmanager
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from . import backoff as bk
from .backoff import BackoffState, OOMExhausted, RelaunchRequest
from .backoff_split import (GradSnapshot, SideEffects, all_reduce_grads, allocated, any_rank, batch_kind, distributed,
                            is_oom,
                            label_tokens, make_chunks, memory_in_use, no_sync, release, released, scale_grads,
                            snapshot_limit, split_refusal, sum_ranks, truncate, truncate_in_place, units)

FAULT_ENV = bk.FAULT_TOKENS
MAX_ATTEMPTS = 32


def fault_limit() -> int | None:
    """Test hook: TUNETOP_FAULT_OOM_TOKENS=N makes every forward pass over more than N tokens (rows x padded
    length) raise torch.OutOfMemoryError, as a GPU that is too small would. Unset: does nothing."""
    return bk.env_int(bk.FAULT_TOKENS)


def _fault_steps() -> dict[int, str]:
    out = {}
    for item in os.environ.get(bk.FAULT_STEPS, "").split(","):
        step, _, phase = item.strip().partition(":")
        if step.isdigit():
            out[int(step)] = phase if phase in ("forward", "backward", "always") else "backward"
    return out


@dataclass
class Failure:
    error: str                 # first line of the exception
    phase: str                 # forward | backward | optimizer step | saving a checkpoint | ...
    memory: int | None         # bytes in use when it happened
    chunk: int = 0             # which chunk of the micro-batch failed
    restored: bool = True      # gradients are back to what they were before the attempt
    released: bool = True      # allocated memory is back at the attempt's baseline
    allocated_now: int | None = None
    baseline: int | None = None

    @classmethod
    def of(cls, exc: BaseException, phase: str, chunk: int = 0) -> "Failure":
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return cls(error=text, phase=phase, memory=memory_in_use(), chunk=chunk)


class _EvalDoesNotFit(Exception):
    pass


class _PeerFailed(Exception):
    """Another rank ran out of memory in this forward; every rank abandons the attempt together."""


class TunetopTrainer(SFTTrainer):
    def __init__(self, *args, profile=None, run_dir: Path | None = None, writer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tt_profile, self.tt_run_dir, self.tt_writer = profile, (Path(run_dir) if run_dir else None), writer
        t = profile.training if profile is not None else None
        gc_on = bool(getattr(self.args, "activation_checkpointing", False) or self.args.gradient_checkpointing)
        seq = int(self.args.max_length or 0)
        self.bo = BackoffState(
            micro_batch=self.args.per_device_train_batch_size, grad_accum=self.args.gradient_accumulation_steps,
            gradient_checkpointing=gc_on, profile_gradient_checkpointing=gc_on, max_seq_len=seq,
            profile_max_seq_len=seq, world_size=max(1, self.args.world_size),
            auto=bool(t is not None and t.micro_batch == "auto"))
        self.allow_shorter = bool(t.allow_shorter_seq_len) if t is not None else False
        self.grow_after = int(t.grow_back_after) if t is not None else 0
        self._phase: str | None = None
        self._where = "training step"
        self._window: list | None = None
        self._mb_index = -1
        self._num_items_override = None
        self._window_rng = None
        self._oom_this_step = False
        self._probing = False
        self._fired: set[int] = set()
        self._faults = _fault_steps()
        self._trainable: list | None = None
        self._fit_key = None
        self._dropout_noted = False
        # Set by the training loop per window; the probe runs before it exists.
        self.current_gradient_accumulation_steps = self.args.gradient_accumulation_steps
        self.add_callback(_BackoffCallback(self))
        step = bk.env_int(bk.FAULT_OPTIMIZER)
        if step and not bk.env_int(bk.RELAUNCH_COUNT):
            self.add_callback(_FaultInOptimizerStep(step))

    # -- the run ---------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        from .probe import prepare
        prepare(self, resume_from_checkpoint)
        failure = None
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                                 ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)
        except (OOMExhausted, RelaunchRequest):
            raise
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled, others re-raised
            if not is_oom(exc):
                raise
            failure = Failure.of(exc, phase=self._where)
        # Outside the except block: its traceback no longer pins the failed step's tensors.
        self.model.zero_grad(set_to_none=True)
        release()
        raise self._relaunch_request(self.state.global_step + 1, failure, self._where)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._start_window(batch_samples)
        if self._seq_len_lowered():
            for batch in batch_samples:
                truncate_in_place(batch, self.bo.max_seq_len)
            num_items = self._get_num_items_in_batch(batch_samples, device)
        return batch_samples, num_items

    def _start_window(self, batch_samples: list) -> None:
        self._window, self._mb_index, self._num_items_override = batch_samples, -1, None
        self._window_rng = _rng_state()
        self._window_counters = (self.state.num_input_tokens_seen, self.current_flos)
        before = self.bo.settings()
        action = bk.grow_back(self.bo, self.grow_after)
        if action:
            if action == "gradient_checkpointing":
                self._set_gc(False)
            after = self.bo.settings()
            step = self.state.global_step + 1
            self._emit(step, "grow_back", "grow_back", before, after,
                       f"step {step}: {self.grow_after * 2 ** self.bo.grow_failures} clean steps since the last "
                       f"backoff; trying a larger size again: {bk.change_text(before, after, self.bo.effective_batch)} "
                       f"(training.grow_back_after = {self.grow_after})")

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._mb_index += 1
        self._where = "training step"
        if self._num_items_override is not None:
            num_items_in_batch = self._num_items_override
        for _ in range(MAX_ATTEMPTS):
            loss, failure = self._attempt(model, inputs, num_items_in_batch, self.bo.split)
            if failure is None:
                if self.accelerator.sync_gradients:
                    all_reduce_grads(self._params())   # several ranks: chunks ran under no_sync
                return loss
            self._oom_this_step = True
            inputs, num_items_in_batch = self._after_failure(failure, inputs, num_items_in_batch)
        raise OOMExhausted(f"out of memory {MAX_ATTEMPTS} times in one micro-batch", "see engine.log")

    # -- one attempt: the micro-batch as `split` chunks, undone completely if any of them runs out of memory --

    def _attempt(self, model, inputs, num_items, split):
        params = self._params()
        if split > 1 and split_refusal(self, inputs, num_items):
            split = 1   # a layout we cannot cut (the ladder says so when it matters): run it whole
        chunks = make_chunks(inputs, split)
        snapshot = GradSnapshot(params, snapshot_limit())
        effects = SideEffects(self, "train")
        baseline = allocated()
        failure, loss, weights, index = None, None, [], 0
        for index, chunk in enumerate(chunks):
            failed = False
            try:
                with no_sync(model), self._agreement(model):
                    part = super().training_step(model, chunk, num_items)
                loss = part if loss is None else loss + part
                if len(chunks) > 1:
                    weights.append(float(label_tokens(chunk)))
            except _PeerFailed:
                failure = Failure("out of memory on another rank", "another rank", None, index)
                break       # every rank left at the forward agreement: no more collectives this attempt
            except Exception as exc:  # noqa: BLE001
                if not is_oom(exc):
                    raise
                failure = Failure.of(exc, phase=self._phase or "forward", chunk=index)
                failed = True
            if self._agree_late(failed):   # all ranks retry together, or none does
                failure = failure or Failure("out of memory on another rank", "another rank", None, index)
                break
        part = chunk = chunks = None  # noqa: F841 - drop references before measuring memory
        if failure is None:
            effects.merge(sum_ranks(weights, self.args.device))
            snapshot.drop()
            return loss, None
        # Recovery, outside the except block.
        loss = None
        untouched = failure.chunk == 0 and failure.phase == "forward"
        failure.restored = snapshot.restore() or untouched
        snapshot.drop()
        effects.undo()
        release()
        failure.released, failure.allocated_now = released(baseline)
        failure.baseline = baseline
        return None, failure

    def _after_failure(self, failure: Failure, inputs, num_items):
        """Climb one rung (or relaunch when the step cannot be retried here). Returns the inputs to retry."""
        step = self.state.global_step + 1
        if not failure.restored:
            raise self._relaunch_request(step, failure, "the backward pass",
                                         "the gradients written before it could not be restored in-step")
        if not failure.released:
            raise self._relaunch_request(
                step, failure, "a training step", f"memory did not come back after the failed attempt "
                f"({bk.gib(failure.allocated_now)} allocated, {bk.gib(failure.baseline)} before)")
        before = self.bo.settings()
        rows_before = self.bo.rows_per_pass
        if self.bo.growing:
            self.bo.grow_failures += 1
            self.bo.growing = False
        rung = bk.next_rung(self.bo, max_split=min(self.bo.micro_batch, units(inputs)),
                            refusal=split_refusal(self, inputs, num_items), allow_shorter=self.allow_shorter)
        self.bo.clean_steps = 0
        from .probe import record_fit
        record_fit(self, fails=rows_before, gradient_checkpointing=before["gradient_checkpointing"])
        if rung.action == "exhausted":
            self._exhausted(step, failure, rung)
        if rung.action == "gradient_checkpointing":
            self._set_gc(True)
        if rung.action == "max_seq_len":
            inputs, num_items = self._shorten_window(inputs, num_items)
        after = self.bo.settings()
        where = {"backward": "the backward pass", "another rank": "another rank"}.get(failure.phase, "")
        message = (f"{bk.step_label(step)}: {bk.oom_text(failure.memory, where)}; "
                   f"{bk.change_text(before, after, self.bo.effective_batch)}")
        if rung.note:
            message += f" ({rung.note})"
        if rung.action == "split" and self._dropout() and not self._dropout_noted:
            self._dropout_noted = True
            message += (f" (lora_dropout = {self._dropout()}: the chunks draw their own dropout masks, so the "
                        "gradient equals the unsplit one in distribution, not bit for bit)")
        self._emit(step, "oom", rung.action, before, after, message, error=failure.error, phase=failure.phase,
                   memory=failure.memory)
        return inputs, num_items

    def _dropout(self) -> float:
        m = self.tt_profile.method if self.tt_profile is not None else None
        return float(m.lora_dropout) if m is not None and m.type in ("lora", "qlora") else 0.0

    def _shorten_window(self, inputs, num_items):
        """max_seq_len was lowered mid-step: cut this and the remaining micro-batches of the window, and
        renormalise so the step is the mean over the tokens it really trains on."""
        length = self.bo.max_seq_len
        window = self._window if self._window is not None and 0 <= self._mb_index < len(self._window) else [inputs]
        start = self._mb_index if window is self._window else 0
        dropped = 0.0
        for batch in window[start:]:
            count = float(label_tokens(batch))
            truncate_in_place(batch, length)
            dropped += count - float(label_tokens(batch))
        if inputs is not window[start]:
            inputs = truncate(inputs, length)
        if num_items is None:
            return inputs, num_items
        if self.args.average_tokens_across_devices:
            dropped = sum_ranks([dropped], self.args.device)[0]
        old = float(num_items)
        new = max(old - dropped, 1.0)
        if start > 0 and new != old:
            scale_grads(self._params(), old / new)   # earlier micro-batches were divided by the old count
        new_items = torch.as_tensor(new, dtype=num_items.dtype, device=num_items.device) \
            if torch.is_tensor(num_items) else new
        self._num_items_override = new_items
        return inputs, new_items

    # -- giving up, or starting over -------------------------------------------------------------------------

    def _exhausted(self, step: int, failure: Failure | None, rung=None, save: bool = True):
        s = self.bo.settings()
        tried = ", ".join(self.bo.history) or "no rung applies"
        message = (f"{bk.oom_text(failure.memory if failure else None)} at {bk.step_label(step)} with micro-batch "
                   f"{s['micro_batch']}, accumulation {s['grad_accum']}, gradient checkpointing "
                   f"{'on' if s['gradient_checkpointing'] else 'off'}, max_seq_len {s['max_seq_len']}; "
                   f"every backoff was tried ({tried})")
        if rung is not None and rung.note:
            message += f"; {rung.note}"
        checkpoint = self._emergency_save() if save else None
        self._emit(step, "oom", "stop", s, s, message, error=failure.error if failure else None)
        raise OOMExhausted(message, self._exhausted_hint(checkpoint))

    def _exhausted_hint(self, checkpoint: Path | None) -> str:
        p = self.tt_profile
        changes = []
        if p is not None:
            if p.method.type != "qlora":
                changes.append('method.type = "qlora" (4-bit base weights)')
            changes.append(f"a lower training.max_seq_len (now {p.training.max_seq_len})")
            if not p.training.allow_shorter_seq_len:
                changes.append("training.allow_shorter_seq_len = true")
            if "8bit" not in p.training.optimizer:
                changes.append('training.optimizer = "adamw_8bit"')
            if p.method.type != "full":
                changes.append("fewer method.target_modules or a lower lora_r")
        changes.append("a smaller model or a GPU with more memory")
        hint = "change one of: " + "; ".join(changes)
        run = self.tt_run_dir.name if self.tt_run_dir else "RUN"
        if checkpoint is not None:
            hint += (f". {checkpoint.name} holds the last completed step: `tunetop resume {run}` continues from it "
                     "(on a machine with more free memory)")
        return hint

    def _emergency_save(self) -> Path | None:
        """A resumable checkpoint of the last completed step (the optimizer has not stepped for this one)."""
        if self.state.global_step <= 0 or self.optimizer is None or self.model_wrapped is None:
            return None
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        self.model.zero_grad(set_to_none=True)
        release()
        if (folder / "trainer_state.json").exists():
            self._write_state(folder)
            return folder
        if self._window_rng is not None:   # as it was when this step began
            _set_rng_state(self._window_rng)
            self.state.num_input_tokens_seen, self.current_flos = self._window_counters
        self._save_checkpoint(self.model_wrapped, trial=None)
        self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        return folder

    def _relaunch_request(self, step: int, failure: Failure | None, where: str, why: str = "") -> Exception:
        """An OOM that cannot be retried in this process: the next rung, saved for a relaunch from the last
        checkpoint (same data order: the dataloader does not change, only how each batch is run)."""
        before = self.bo.settings()
        nxt = copy.deepcopy(self.bo)
        nxt.growing = False
        rung = bk.next_rung(nxt, max_split=nxt.micro_batch, refusal=split_refusal(self, None, None),
                            allow_shorter=self.allow_shorter)
        if rung.action == "exhausted" or nxt.relaunches >= bk.MAX_RELAUNCHES:
            self._exhausted(step, failure, rung, save=False)
        nxt.relaunches += 1
        nxt.step = self.state.global_step
        nxt.clean_steps = 0
        from ..rundir import last_checkpoint
        checkpoint = last_checkpoint(self.tt_run_dir) if self.tt_run_dir else None
        after = nxt.settings()
        message = (f"{bk.step_label(step)}: {bk.oom_text(failure.memory if failure else None, where)}"
                   f"{'; ' + why if why else ''}; relaunching from "
                   f"{checkpoint.name if checkpoint else 'step 0 (no checkpoint yet)'} with "
                   f"{bk.change_text(before, after, nxt.effective_batch)}")
        if self.tt_run_dir is not None and self.is_world_process_zero():
            bk.write_json(self.tt_run_dir / bk.OVERRIDE_FILE, nxt.to_json())
        self._emit(step, "oom_unretryable", "relaunch", before, after, message,
                   error=failure.error if failure else None, phase=where,
                   memory=failure.memory if failure else None, relaunch=nxt.relaunches)
        return RelaunchRequest(self.tt_run_dir, message, nxt.relaunches)

    # -- checkpoints carry the backoff state -------------------------------------------------------------

    def _save_checkpoint(self, model, trial):
        where, self._where = self._where, "saving a checkpoint"
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        self._write_state(folder)
        self._where = where

    def _write_state(self, folder: Path) -> None:
        if self.args.should_save and folder.is_dir():
            state = copy.deepcopy(self.bo)
            state.step = self.state.global_step
            bk.write_json(folder / bk.STATE_FILE, state.to_json())

    # -- evaluation backs off on its own ---------------------------------------------------------------------

    def evaluate(self, *args, **kwargs):
        where, self._where = self._where, "evaluation"
        problem = None
        try:
            return super().evaluate(*args, **kwargs)
        except _EvalDoesNotFit as exc:
            problem = str(exc)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            problem = f"out of memory in evaluation ({str(exc).strip().splitlines()[0][:200]})"
        finally:
            self._where = where
        release()
        self.model.train()
        self._log(f"step {self.state.global_step}: evaluation skipped: {problem}; training goes on", "warning")
        return {}

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if not prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        for _ in range(MAX_ATTEMPTS):
            loss, failure = self._eval_attempt(model, inputs, self.bo.eval_split, ignore_keys)
            if failure is None:
                return loss, None, None
            self._eval_backoff(failure, inputs)
        raise _EvalDoesNotFit(f"out of memory {MAX_ATTEMPTS} times in one evaluation batch")

    def _eval_attempt(self, model, inputs, split, ignore_keys=None):
        if split > 1 and split_refusal(self, inputs, 1):
            split = 1
        effects = SideEffects(self, "eval")
        baseline = allocated()
        failure, loss = None, None
        try:
            if split <= 1:
                with self._agreement(model):
                    loss, _, _ = super().prediction_step(model, inputs, True, ignore_keys)
            else:
                loss = self._eval_chunks(model, inputs, split)
        except _PeerFailed:
            failure = Failure("out of memory on another rank", "another rank", None)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            failure = Failure.of(exc, phase="evaluation")
            if distributed() and not getattr(self, "_fwd_agreed", True):
                any_rank(True, self.args.device)   # the other ranks wait in this forward's agreement
        if failure is None:
            return loss, None
        loss = None
        effects.undo()
        release()
        failure.released, failure.allocated_now = released(baseline)
        return None, failure

    def _eval_chunks(self, model, inputs, split):
        """The eval loss of the batch (token mean over the whole batch) from chunks: each chunk's token sum is
        divided by the batch's token count, and the sums add up."""
        inputs = self._prepare_inputs(inputs)
        chunks = make_chunks(inputs, split)
        total = label_tokens(inputs)
        scale = 1
        if self.args.average_tokens_across_devices:
            scale = self.accelerator.num_processes // self.get_tp_size()
        effects = SideEffects(self, "eval")
        loss, weights = None, []
        with torch.no_grad(), self.compute_loss_context_manager():
            for chunk in chunks:
                with self._agreement(model):
                    part = self.compute_loss(model, chunk, num_items_in_batch=total) / scale
                loss = part.detach() if loss is None else loss + part.detach()
                weights.append(float(label_tokens(chunk)))
        effects.merge(sum_ranks(weights, self.args.device))
        return loss

    def _eval_backoff(self, failure: Failure, inputs) -> None:
        rows = int(inputs["input_ids"].shape[0]) if batch_kind(inputs) == "padded" else None
        limit = min(units(inputs), self.args.per_device_eval_batch_size)
        refusal = split_refusal(self, inputs, 1)
        if refusal or self.bo.eval_split >= limit or not failure.released:
            why = refusal or ("memory did not come back" if not failure.released else "one row does not fit")
            rows_now = -(-self.args.per_device_eval_batch_size // self.bo.eval_split)
            raise _EvalDoesNotFit(f"{bk.oom_text(failure.memory)} with an eval batch of {rows_now} "
                                  f"row{'s' if rows_now != 1 else ''} ({why})")
        size = self.args.per_device_eval_batch_size
        before = -(-size // self.bo.eval_split)
        self.bo.eval_split = min(self.bo.eval_split * 2, limit)
        after = -(-size // self.bo.eval_split)
        step = self.state.global_step
        self._emit(step, "oom_eval", "eval_split", {"eval_batch": before}, {"eval_batch": after},
                   f"step {step}: {bk.oom_text(failure.memory, 'evaluation')}; eval batch {before} -> {after} "
                   "(training unchanged)", error=failure.error, phase="evaluation", rows=rows)

    # -- fault hooks and bookkeeping around compute_loss ----------------------------------------------------

    def compute_loss(self, model, inputs, *args, **kwargs):
        self._phase = "forward"
        ids = inputs["input_ids"]
        limit = fault_limit() if model.training else bk.env_int(bk.FAULT_EVAL_TOKENS)
        if limit is not None and ids.numel() > limit:
            raise torch.OutOfMemoryError(
                f"simulated by {bk.FAULT_TOKENS if model.training else bk.FAULT_EVAL_TOKENS}={limit}: chunk of "
                f"{ids.shape[0]} x {ids.shape[1]} = {ids.numel()} tokens")
        handle = None
        inject = self._injected_fault(model)
        if inject == "forward":
            raise torch.OutOfMemoryError(f"simulated by {bk.FAULT_STEPS}: step {self.state.global_step + 1}, forward")
        if inject == "backward":
            handle = _arm_backward_fault(model, self.state.global_step + 1)
        try:
            out = super().compute_loss(model, inputs, *args, **kwargs)
        finally:
            if handle is not None:
                handle.remove()
        self._phase = "backward"
        return out

    def _injected_fault(self, model) -> str | None:
        if not self._faults or not model.training or self._probing or self._window is None:
            return None
        rank = bk.env_int(bk.FAULT_RANK)
        if rank is not None and rank != self.args.process_index:
            return None
        step = self.state.global_step + 1
        if step in self._faults and step not in self._fired and self._mb_index == len(self._window) - 1:
            if self._faults[step] == "always":
                return "forward"          # a step that never fits: every attempt fails
            self._fired.add(step)
            return self._faults[step]
        return None

    # -- several ranks decide together --------------------------------------------------------------------
    #
    # SFTTrainer.compute_loss gathers metrics across ranks right after the forward, and DDP reduces in the
    # backward. So that an OOM on one rank never leaves the others waiting in a collective, each forward ends
    # with an agreement (an all-reduce of "did anyone fail?"; a rank whose forward failed joins it from its
    # except path), each chunk's backward with another, all chunks run under no_sync, and the gradients are
    # averaged once after the last micro-batch (all_reduce_grads). One process: no-ops.

    @contextmanager
    def _agreement(self, model):
        self._fwd_agreed = not distributed()
        if self._fwd_agreed:
            yield
            return
        target = getattr(model, "module", model)

        def agree(module, args, output):
            self._fwd_agreed = True
            if any_rank(False, self.args.device):
                raise _PeerFailed()
        handle = target.register_forward_hook(agree)
        try:
            yield
        finally:
            handle.remove()

    def _agree_late(self, failed: bool) -> bool:
        """After a chunk: True when any rank failed. A rank that failed before the forward agreement joins
        that one instead (the others are waiting in it)."""
        if not distributed():
            return failed
        if not getattr(self, "_fwd_agreed", True):
            any_rank(True, self.args.device)
            return True
        return any_rank(failed, self.args.device)

    def _params(self) -> list:
        if self._trainable is None:
            self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        return self._trainable

    def _seq_len_lowered(self) -> bool:
        return bool(self.bo.max_seq_len and self.bo.profile_max_seq_len
                    and self.bo.max_seq_len < self.bo.profile_max_seq_len)

    def _set_gc(self, on: bool) -> None:
        base = self.accelerator.unwrap_model(self.model)
        if hasattr(base, "get_base_model"):
            base = base.get_base_model()
        if on:
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.activation_checkpointing_disable()
        self.bo.gradient_checkpointing = on

    def _emit(self, step, reason, action, before, after, message, **extra) -> None:
        print(f"backoff: {message}", file=sys.stderr, flush=True)
        if self.tt_writer is not None and self.is_world_process_zero():
            self.tt_writer.write("backoff", step=step, reason=reason, action=action, before=before, after=after,
                                 message=message, split=self.bo.split, effective_batch=self.bo.effective_batch,
                                 **{k: v for k, v in extra.items() if v is not None})

    def _log(self, message: str, level: str = "info") -> None:
        print(message, file=sys.stderr, flush=True)
        if self.tt_writer is not None and self.is_world_process_zero():
            self.tt_writer.write("log", level=level, message=message)


class _BackoffCallback(TrainerCallback):
    """Where the loop is (for messages), and clean steps (for growing back)."""

    def __init__(self, trainer: TunetopTrainer):
        self.t = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.t._where = "the optimizer step"

    def on_step_end(self, args, state, control, **kwargs):
        t, bo = self.t, self.t.bo
        t._where = "training step"
        if t._oom_this_step:
            bo.clean_steps = 0
        else:
            bo.clean_steps += 1
            if bo.growing:
                bo.growing = False
                from .probe import record_fit
                record_fit(t, fits=bo.rows_per_pass, gradient_checkpointing=bo.gradient_checkpointing)
        t._oom_this_step = False
        bo.step = state.global_step


class _FaultInOptimizerStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            raise torch.OutOfMemoryError(f"simulated by {bk.FAULT_OPTIMIZER}={self.step}: optimizer step")


def _arm_backward_fault(model, step: int):
    """Raise an OOM in the backward pass once the gradients of the upper layers are written: a hook on the
    first decoder layer's output fires only after everything above it has been differentiated."""
    layer = next((m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")), None)
    if layer is None:
        return None

    def raise_oom(grad):
        raise torch.OutOfMemoryError(f"simulated by {bk.FAULT_STEPS}: step {step}, backward")

    def on_forward(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(hidden) and hidden.requires_grad:
            hidden.register_hook(raise_oom)

    return layer.register_forward_hook(on_forward)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
