"""tunetop's SFTTrainer: trl's trainer plus out-of-memory backoff that loses no step.

On an out-of-memory error inside a training step, the same micro-batch runs again as smaller row-chunks
(each its own forward and backward with the window's num_items_in_batch), so the gradient, the optimizer
steps, the LR schedule, the sampler order, the logged loss and metrics and the token counts are what they
would have been without the error. The ladder, the relaunch and the files are described in backoff.py;
the cutting of batches in backoff_split.py.

The class is composed of mixins, each with one job (the order is the MRO, SFTTrainer last):

  ProbeMixin        probe.py         before step 1: resumed sizes, fit cache, probe, micro_batch = "auto"
  EvalBackoffMixin  eval_backoff.py  evaluation splits its batch on its own, or is skipped
  CheckpointMixin   checkpointing.py atomic, verified checkpoints; disk space; --reset-optimizer
  OOMFaultsMixin    faults.py        the TUNETOP_FAULT_OOM_* test hooks (every hook is documented there)
"""
from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from . import backoff as bk
from .backoff import BackoffState, OOMExhausted, RelaunchRequest
from .backoff_split import (Failure, GradSnapshot, PeerFailed, SideEffects, all_reduce_grads, allocated, any_rank,
                            distributed, is_oom, label_tokens, make_chunks, no_sync, release, released, rng_state,
                            scale_grads, set_rng_state, snapshot_limit, split_refusal, sum_ranks, truncate,
                            truncate_in_place, units)
from .. import checkpoints as ck
from .backoff_ranks import RankReport
from .checkpointing import CheckpointMixin
from .eval_backoff import EvalBackoffMixin
from .faults import OOMFaultsMixin
from .probe import ProbeMixin

FAULT_ENV = bk.FAULT_TOKENS
MAX_ATTEMPTS = 32


class TunetopTrainer(ProbeMixin, EvalBackoffMixin, CheckpointMixin, OOMFaultsMixin, SFTTrainer):
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
        self._trainable: list | None = None
        self._fit_key = None
        self._dropout_noted = False
        # Set by the training loop per window; the probe runs before it exists.
        self.current_gradient_accumulation_steps = self.args.gradient_accumulation_steps
        self.add_callback(_BackoffCallback(self))
        self._init_faults(relaunched=bool(bk.env_int(bk.RELAUNCH_COUNT)))

    # -- the run ---------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        self._prepare_before_step_1(resume_from_checkpoint)
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
        self._window_rng = rng_state()
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
            except PeerFailed:
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
        ranks = RankReport.gather(self.args.process_index, failure)   # several ranks: decide together
        if ranks is not None:
            failure = ranks.merged(failure)
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
        self._record_fit(fails=rows_before, gradient_checkpointing=before["gradient_checkpointing"])
        if rung.action == "exhausted":
            self._exhausted(step, failure, rung)
        if rung.action == "gradient_checkpointing":
            self._set_gc(True)
        if rung.action == "max_seq_len":
            inputs, num_items = self._shorten_window(inputs, num_items)
        after = self.bo.settings()
        where = {"backward": "the backward pass", "another rank": "another rank"}.get(failure.phase, "")
        extra = {}
        if ranks is not None:
            where = ranks.where({"backward": "in the backward pass"})
            extra = ranks.fields(self.args.process_index, after, self.bo.split)
        message = (f"{bk.step_label(step)}: {bk.oom_text(failure.memory, where)}; "
                   f"{bk.change_text(before, after, self.bo.effective_batch)}")
        if rung.note:
            message += f" ({rung.note})"
        if rung.action == "split" and self._dropout() and not self._dropout_noted:
            self._dropout_noted = True
            message += (f" (lora_dropout = {self._dropout()}: the chunks draw their own dropout masks, so the "
                        "gradient equals the unsplit one in distribution, not bit for bit)")
        self._emit(step, "oom", rung.action, before, after, message, error=failure.error, phase=failure.phase,
                   memory=failure.memory, **extra)
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
        if ck.is_complete(folder):
            self._write_state(folder)
            return folder
        if self._window_rng is not None:   # as it was when this step began
            set_rng_state(self._window_rng)
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
        checkpoint = ck.last_checkpoint(self.tt_run_dir) if self.tt_run_dir else None
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

    # -- where the step is, for messages (the OOM test hooks sit below, in OOMFaultsMixin) ------------------

    def compute_loss(self, model, inputs, *args, **kwargs):
        self._phase = "forward"
        out = super().compute_loss(model, inputs, *args, **kwargs)
        self._phase = "backward"
        return out

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
                raise PeerFailed()
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
                t._record_fit(fits=bo.rows_per_pass, gradient_checkpointing=bo.gradient_checkpointing)
        t._oom_this_step = False
        bo.step = state.global_step
