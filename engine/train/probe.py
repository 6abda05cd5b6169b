"""Before step 1: restore the backoff state of a resumed run, consult the fit cache, and probe.

ProbeMixin is part of TunetopTrainer's class hierarchy (trainer.py lists the mixins).

The probe runs one forward and backward on the worst-case micro-batch (the longest rows of the training
set, collated like a real batch) with the split the run would start with. If it runs out of memory, the
ladder climbs right there (``backoff`` events with step 0), so a configuration that cannot fit is found in
seconds, not at hour five. Gradients, SFTTrainer's metrics, token counters and the RNG are left exactly
as they were. The evaluation batch is probed the same way (forward only).

micro_batch = "auto": the dataloader holds the whole effective batch (per device) and the search picks how
many row-chunks it runs as: it starts from the fit cache, else from the VRAM estimate (GPU), else from the
whole batch, goes down until the worst case fits and up while the next size is not known to fail.
Under DDP every rank searches together: rank 0's starting point is broadcast, each attempt fails on every
rank when it fails on one, and the chosen split is all-reduced (MAX split = MIN rows per pass), so all
ranks train at the same size, the largest that fits on every GPU. (FSDP cannot split a batch: refused by
the validator and the launch layout.)
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import fitcache
from . import backoff as bk
from .backoff_ranks import RankReport
from .backoff_split import (SideEffects, device_name_and_memory, on_cuda, release, rng_state, set_rng_state,
                            split_refusal, truncate, units)


class ProbeMixin:
    """TunetopTrainer's start: the resumed backoff state, the fit cache, the probe and the auto search.

    It uses the trainer's own attempt and ladder (`_attempt`, `_eval_attempt`, `_eval_backoff`, `_emit`,
    `_exhausted`) because it is the trainer: one class hierarchy, no reaching into another object.
    """

    def _prepare_before_step_1(self, checkpoint) -> None:
        bo = self.bo
        chosen = self._restore_backoff(checkpoint)
        self._fit_key = self._make_fit_key()
        if chosen is None and not bo.auto:
            self._apply_fit_cache()
        if bo.gradient_checkpointing:
            self._set_gc(True)
        self._probe()
        self._update_start_info()

    # -- resume ----------------------------------------------------------------------------------------------

    def _restore_backoff(self, checkpoint):
        """A checkpoint's backoff state, or the relaunch override when it is newer (it was written after the
        checkpoint, by the process that could not go on)."""
        bo = self.bo
        saved = bk.read_state(Path(checkpoint) / bk.STATE_FILE) if checkpoint else None
        saved_step = saved.step if saved else _checkpoint_step(checkpoint)
        override = bk.read_state(self.tt_run_dir / bk.OVERRIDE_FILE) if self.tt_run_dir else None
        chosen = override if override is not None and override.step >= saved_step else saved
        if chosen is None:
            return None
        before = bo.settings()
        bo.adopt(chosen)
        after = bo.settings()
        source = bk.OVERRIDE_FILE if chosen is override else f"{Path(checkpoint).name}/{bk.STATE_FILE}"
        if after != before:
            self._log(f"resuming with the sizes that worked ({source}): "
                      f"{bk.change_text(before, after, bo.effective_batch)}")
        return chosen

    # -- the fit cache ---------------------------------------------------------------------------------------

    def _make_fit_key(self):
        if self.tt_profile is None:
            return None
        name, memory = device_name_and_memory()
        return fitcache.shape_key(self.tt_profile, name, memory, bk.env_int(bk.FAULT_TOKENS))

    def _record_fit(self, *, fits: int | None = None, fails: int | None = None,
                    gradient_checkpointing: bool) -> None:
        if self._fit_key is not None and self.is_world_process_zero():
            fitcache.record(self._fit_key, gradient_checkpointing, fits=fits, fails=fails)

    def _apply_fit_cache(self) -> None:
        """A fixed micro-batch the cache knows to fail: start at the size that worked, and say so."""
        bo = self.bo
        if self._fit_key is None:
            return
        before = bo.settings()
        known = fitcache.lookup(self._fit_key, bo.gradient_checkpointing)
        if not bo.gradient_checkpointing and known["fails"] == 1:
            on = fitcache.lookup(self._fit_key, True)
            bo.gradient_checkpointing = True
            bo.history.append("gradient checkpointing")
            known = on
        fails = known["fails"]
        if fails is not None:
            for k in _splits(bo.micro_batch):
                if k >= bo.split and math.ceil(bo.micro_batch / k) < fails:
                    if k > bo.split:
                        bo.split = k
                        bo.history.append(f"micro-batch {bo.rows_per_pass}")
                    break
        after = bo.settings()
        if after != before:
            self._emit(0, "fit_cache", "split", before, after,
                       f"before step 1: the fit cache says this run's size ran out of memory on "
                       f"{self._fit_key['device']}; {bk.change_text(before, after, bo.effective_batch)}",
                       fit_cache=str(fitcache.cache_path()))

    # -- the probe -------------------------------------------------------------------------------------------

    @contextmanager
    def _probing_scope(self):
        """Leave no trace: RNG, gradients, metrics and token counters as before; model back in train mode."""
        rng = rng_state()
        effects = {mode: SideEffects(self, mode) for mode in ("train", "eval")}
        self._probing = True
        try:
            yield
        finally:
            self._probing = False
            self.model.zero_grad(set_to_none=True)
            for e in effects.values():
                e.undo()
            set_rng_state(rng)
            self.model.train()
            release()

    def _probe(self) -> None:
        bo = self.bo
        batch = self.worst_case_batch(self.train_dataset, bo.micro_batch)
        if batch is None:
            return
        num_items = self._get_num_items_in_batch([batch], self.args.device)
        ballast = self._optimizer_ballast()
        try:
            with self._probing_scope():
                if bo.auto:
                    self._auto_search(batch, num_items)
                else:
                    self._probe_settle(batch, num_items)
                if self.eval_dataset is not None:
                    self._probe_eval()
        finally:
            del ballast
            release()

    def _probe_try(self, batch, num_items, split):
        if self._seq_len_lowered():
            batch = truncate(batch, self.bo.max_seq_len)
        self.model.zero_grad(set_to_none=True)
        loss, failure = self._attempt(self.model_wrapped or self.model, batch, num_items, split)
        self.model.zero_grad(set_to_none=True)
        return failure

    def _probe_settle(self, batch, num_items) -> None:
        """Climb the ladder until the worst case fits (fixed micro-batch)."""
        bo = self.bo
        for _ in range(64):
            failure = self._probe_try(batch, num_items, bo.split)
            if failure is None:
                bo.floor_split = bo.split
                self._record_fit(fits=bo.rows_per_pass, gradient_checkpointing=bo.gradient_checkpointing)
                return
            self._probe_climb(failure, batch, num_items)

    def _probe_climb(self, failure, batch, num_items) -> None:
        bo = self.bo
        before = bo.settings()
        ranks = RankReport.gather(self.args.process_index, failure)   # several ranks: who ran out
        if ranks is not None:
            failure = ranks.merged(failure)
        self._record_fit(fails=bo.rows_per_pass, gradient_checkpointing=bo.gradient_checkpointing)
        rung = bk.next_rung(bo, max_split=min(bo.micro_batch, units(batch)),
                            refusal=split_refusal(self, batch, num_items), allow_shorter=self.allow_shorter)
        if rung.action == "exhausted":
            self._exhausted(0, failure, rung, save=False)
        if rung.action == "gradient_checkpointing":
            self._set_gc(True)
        after = bo.settings()
        where = ranks.where({"backward": "in the backward pass"}) if ranks is not None else ""
        extra = ranks.fields(self.args.process_index, after, bo.split) if ranks is not None else {}
        message = (f"before step 1: the probe ran {bk.oom_text(failure.memory, where)} on the {bo.micro_batch} "
                   f"longest rows; {bk.change_text(before, after, bo.effective_batch)}")
        if rung.note:
            message += f" ({rung.note})"
        if not failure.released:
            message += " (memory did not come back after the attempt: climbing instead of retrying)"
        self._emit(0, "oom_probe", rung.action, before, after, message, error=failure.error, phase=failure.phase,
                   memory=failure.memory, **extra)

    def _auto_search(self, batch, num_items) -> None:
        """micro_batch = "auto": the largest rows-per-pass whose worst case fits."""
        bo = self.bo
        splits = _splits(bo.micro_batch)

        def rows(k):
            return math.ceil(bo.micro_batch / k)

        known, start, origin, checkpointing = _agreed(self._auto_plan(splits, rows))
        if checkpointing and not bo.gradient_checkpointing:
            bo.gradient_checkpointing = True
            self._set_gc(True)
        failed: list[int] = [known["fails"]] if known["fails"] is not None else []

        def known_to_fail(k):
            return bool(failed) and rows(k) >= min(failed)

        i = splits.index(start)
        tried: list[str] = []
        while True:
            failure = self._probe_try(batch, num_items, splits[i])
            tried.append(f"{rows(splits[i])} {'fits' if failure is None else 'out of memory'}")
            if failure is None:
                break
            failed.append(rows(splits[i]))
            self._record_fit(fails=rows(splits[i]), gradient_checkpointing=bo.gradient_checkpointing)
            if i + 1 < len(splits):
                i += 1
                continue
            bo.split = splits[i]
            self._probe_climb(failure, batch, num_items)   # one row per pass does not fit: checkpointing, ...
            failed.clear()   # what failed without checkpointing (or at full length) may fit now
            i = splits.index(bo.split) if bo.split in splits else len(splits) - 1
        while i > 0 and not known_to_fail(splits[i - 1]):
            failure = self._probe_try(batch, num_items, splits[i - 1])
            tried.append(f"{rows(splits[i - 1])} {'fits' if failure is None else 'out of memory'}")
            if failure is not None:
                self._record_fit(fails=rows(splits[i - 1]), gradient_checkpointing=bo.gradient_checkpointing)
                break
            i -= 1
        # Every attempt above was collective (an OOM on any rank fails it on all), so the ranks arrive at the
        # same size; the all-reduce makes it so by construction: the smallest rows per pass of any rank.
        bo.split = bo.floor_split = _max_over_ranks(splits[i], self.args.device)
        self._record_fit(fits=bo.rows_per_pass, gradient_checkpointing=bo.gradient_checkpointing)
        s = bo.settings()
        checkpointing = ", gradient checkpointing on" if bo.gradient_checkpointing else ""
        self._log(f"micro_batch = \"auto\": {s['micro_batch']} rows per pass x accumulation {s['grad_accum']} = "
                  f"effective batch {bo.effective_batch}{checkpointing}"
                  f" (started from {origin}; on the {bo.micro_batch} longest rows: {', '.join(tried)})")

    def _auto_plan(self, splits, rows) -> tuple[dict, int, str, bool]:
        """(what the fit cache knows, the split to start from, where it came from, checkpointing needed)."""
        bo = self.bo
        checkpointing = bo.gradient_checkpointing
        known = fitcache.lookup(self._fit_key, checkpointing) if self._fit_key else {"fits": None, "fails": None}
        if self._fit_key and not checkpointing and known["fails"] == 1:
            checkpointing = True
            known = fitcache.lookup(self._fit_key, True)
        start, origin = self._auto_start(splits, known, rows)
        return known, start, origin, checkpointing

    def _auto_start(self, splits, known, rows):
        if known["fits"] is not None:
            for k in splits:
                if rows(k) <= known["fits"]:
                    return k, "the fit cache"
        if known["fails"] is not None:
            for k in splits:
                if rows(k) < known["fails"]:
                    return k, "the fit cache"
        estimated = self._estimate_start(splits, rows)
        if estimated is not None:
            return estimated, "the VRAM estimate"
        return splits[0], "the whole effective batch"

    def _estimate_start(self, splits, rows):
        """On a GPU: the largest size the VRAM estimate puts under 90% of the card (None when unknown)."""
        if not on_cuda() or self.tt_profile is None:
            return None
        from ..plan import start_size   # the one door to the estimate (hub models included, engine/plan/start.py)
        try:
            device = torch.cuda.current_device()
            found = start_size(self.tt_profile, torch.cuda.get_device_properties(device).total_memory,
                               [rows(k) for k in splits], capability=torch.cuda.get_device_capability(device),
                               gradient_checkpointing=self.bo.gradient_checkpointing,
                               padding_free=bool(getattr(self, "padding_free", False)))
        except Exception:  # noqa: BLE001 - the estimate is a starting point, never a reason to fail
            return None
        return next((k for k in splits if rows(k) == found.rows), None)

    # -- evaluation -----------------------------------------------------------------------------------------

    def _probe_eval(self) -> None:
        size = self.args.per_device_eval_batch_size
        batch = self.worst_case_batch(self.eval_dataset, size)
        if batch is None:
            return
        self.model.eval()
        for _ in range(64):
            loss, failure = self._eval_attempt(self.model, batch, self.bo.eval_split)
            if failure is None:
                return
            try:
                self._eval_backoff(failure, batch)
            except Exception as exc:  # noqa: BLE001 - EvalDoesNotFit: evaluation will be skipped when it comes
                self._log(f"before step 1: {exc}; evaluations will be skipped", "warning")
                return

    # -- helpers ---------------------------------------------------------------------------------------------

    def worst_case_batch(self, dataset, rows: int):
        """The `rows` longest rows of the dataset, collated and on the device, like the heaviest real batch."""
        if dataset is None or not hasattr(dataset, "column_names") or "input_ids" not in dataset.column_names \
                or len(dataset) == 0:
            return None
        lengths = _lengths(dataset)
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:rows]
        ds = self._remove_unused_columns(dataset, description="probe")
        batch = self.data_collator([ds[i] for i in order])
        batch = self._prepare_inputs(batch)
        if self._seq_len_lowered():
            batch = truncate(batch, self.bo.max_seq_len)
        return batch

    def _optimizer_ballast(self):
        """On a GPU, hold the memory the optimizer state will take from step 1 on, so the probe sees it."""
        if not on_cuda():
            return None
        from ..plan import optimizer_state_bytes   # the estimator's table; paged state is not held (0)
        name = str(getattr(self.args.optim, "value", self.args.optim)).lower()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        n = sum(p.numel() for p in trainable)
        nbytes = optimizer_state_bytes(name, [(tuple(p.shape), p.element_size()) for p in trainable])
        if nbytes <= 0:
            return None
        try:
            return torch.empty(nbytes, dtype=torch.uint8, device=self.args.device)
        except torch.OutOfMemoryError:
            pass
        release()
        raise bk.OOMExhausted(
            f"out of memory before step 1: the optimizer state ({bk.gib(nbytes)} for {n:,} trainable parameters) "
            "does not fit next to the model, whatever the micro-batch",
            self._exhausted_hint(None))

    def _update_start_info(self) -> None:
        s = self.bo.settings()
        for cb in self.callback_handler.callbacks:
            info = getattr(cb, "start_info", None)
            if isinstance(info, dict):
                info.update(micro_batch=s["micro_batch"], grad_accum=s["grad_accum"],
                            gradient_checkpointing=s["gradient_checkpointing"], max_seq_len=s["max_seq_len"])
                if self.bo.split > 1:
                    info["split"] = self.bo.split


def _agreed(plan: tuple) -> tuple:
    """Several ranks: rank 0's plan for the search, on every rank. Each rank's fit cache and GPU may say
    something else, and a rank starting elsewhere would run different attempts: their collectives would
    pair up wrongly and hang. From the same start, every attempt fails or fits on all ranks together."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return plan
    box = [plan]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _max_over_ranks(value: int, device) -> int:
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _checkpoint_step(checkpoint) -> int:
    if not checkpoint:
        return 0
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _splits(micro_batch: int) -> list[int]:
    """The splits the ladder can reach: 1, 2, 4, ... and finally one row per pass."""
    out, k = [1], 1
    while k < micro_batch:
        k = min(k * 2, micro_batch)
        out.append(k)
    return out


def _lengths(dataset) -> list[int]:
    try:
        if getattr(dataset, "_indices", None) is None:
            import pyarrow.compute as pc
            return pc.list_value_length(dataset.data.column("input_ids")).to_pylist()
    except Exception:  # noqa: BLE001
        pass
    return [len(x) for x in dataset["input_ids"]]


__all__ = ["ProbeMixin"]
