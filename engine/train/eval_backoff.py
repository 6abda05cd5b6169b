"""Evaluation backs off on its own (EvalBackoffMixin, part of TunetopTrainer).

An out-of-memory error in an evaluation forward splits the eval batch (the loss is the token mean over the
whole batch, rebuilt from the chunks' token sums), never touching training. When even one row does not
fit, that evaluation is skipped with a warning and training goes on.
"""
from __future__ import annotations

import torch

from . import backoff as bk
from .backoff_split import (Failure, PeerFailed, SideEffects, allocated, any_rank, batch_kind, distributed, is_oom,
                            label_tokens, make_chunks, release, released, split_refusal, sum_ranks, units)

MAX_ATTEMPTS = 32


class EvalDoesNotFit(Exception):
    pass


class EvalBackoffMixin:
    def evaluate(self, *args, **kwargs):
        where, self._where = self._where, "evaluation"
        problem = None
        try:
            return super().evaluate(*args, **kwargs)
        except EvalDoesNotFit as exc:
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
        raise EvalDoesNotFit(f"out of memory {MAX_ATTEMPTS} times in one evaluation batch")

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
        except PeerFailed:
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
            raise EvalDoesNotFit(f"{bk.oom_text(failure.memory)} with an eval batch of {rows_now} "
                                 f"row{'s' if rows_now != 1 else ''} ({why})")
        size = self.args.per_device_eval_batch_size
        before = -(-size // self.bo.eval_split)
        self.bo.eval_split = min(self.bo.eval_split * 2, limit)
        after = -(-size // self.bo.eval_split)
        step = self.state.global_step
        self._emit(step, "oom_eval", "eval_split", {"eval_batch": before}, {"eval_batch": after},
                   f"step {step}: {bk.oom_text(failure.memory, 'evaluation')}; eval batch {before} -> {after} "
                   "(training unchanged)", error=failure.error, phase="evaluation", rows=rows)
