"""The mechanics of an exact split: cut a collated batch into row-chunks (padded) or document-chunks
(packed / padding-free), save and restore gradients around an attempt, undo SFTTrainer's per-call side
effects, save and restore the random generators, agree across ranks, and check that memory really came back.

Exactness rests on one fact (docs/facts.md): with ``num_items_in_batch`` counted over the whole accumulation
window, the loss of a micro-batch is a plain sum of token losses divided by a constant, so chunks summed
are the micro-batch. Every function here keeps that true or refuses.
"""
from __future__ import annotations

import gc
import math
from contextlib import nullcontext
from dataclasses import dataclass

import psutil
import torch

# Keys a batch may hold that we know how to cut. Anything else (pixel values, custom fields) is refused.
PADDED_KEYS = {"input_ids", "attention_mask", "labels", "position_ids", "shift_labels", "completion_mask",
               "assistant_masks", "token_type_ids"}
PACKED_TOKEN_KEYS = {"input_ids", "labels", "position_ids", "shift_labels", "completion_mask", "seq_idx"}
PACKED_DERIVED_KEYS = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}


# -- what kind of batch ------------------------------------------------------------------------------------

def batch_kind(inputs: dict) -> str:
    """"padded" (rows x length with an attention mask), "packed" (one row of concatenated documents with
    position ids restarting at 0), or "other"."""
    ids = inputs.get("input_ids")
    if not torch.is_tensor(ids) or ids.dim() != 2:
        return "other"
    if "attention_mask" not in inputs and torch.is_tensor(inputs.get("position_ids")) and ids.shape[0] == 1:
        return "packed" if set(inputs) <= PACKED_TOKEN_KEYS | PACKED_DERIVED_KEYS else "other"
    return "padded" if set(inputs) <= PADDED_KEYS else "other"


def units(inputs: dict) -> int:
    """How many pieces the batch can be cut into: rows (padded) or documents (packed)."""
    kind = batch_kind(inputs)
    if kind == "padded":
        return int(inputs["input_ids"].shape[0])
    if kind == "packed":
        return len(_doc_starts(inputs))
    return 1


def split_refusal(trainer, inputs: dict | None, num_items) -> str | None:
    """Why splitting this micro-batch would not give the unsplit gradient, or None when it would."""
    args = trainer.args
    if inputs is not None and num_items is None:
        return ("the loss is normalised per micro-batch (num_items_in_batch unknown), so chunks would be "
                "weighted differently")
    if getattr(trainer, "aux_loss_enabled", False):
        return "the MoE router loss is a per-micro-batch mean"
    if getattr(args, "n_gpu", 1) > 1:
        return "torch.nn.DataParallel splits batches itself"
    if getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False):
        return "DeepSpeed/FSDP manage gradients themselves"
    pc = getattr(trainer.accelerator, "parallelism_config", None)
    if pc is not None and (getattr(pc, "cp_enabled", False) or getattr(pc, "sp_enabled", False)):
        return "context/sequence parallelism shards the sequence across ranks"
    if inputs is not None:
        kind = batch_kind(inputs)
        if kind == "other":
            extra = sorted(set(inputs) - PADDED_KEYS - PACKED_TOKEN_KEYS - PACKED_DERIVED_KEYS)
            return f"the batch holds fields tunetop cannot cut exactly ({', '.join(extra) or 'unknown layout'})"
    return None


# -- cutting ---------------------------------------------------------------------------------------------------

def make_chunks(inputs: dict, split: int) -> list[dict]:
    """The micro-batch as at most `split` chunks, in order (empty ones dropped). split 1 -> [inputs]."""
    if split <= 1:
        return [inputs]
    kind = batch_kind(inputs)
    if kind == "padded":
        return _padded_chunks(inputs, split)
    if kind == "packed":
        return _packed_chunks(inputs, split)
    raise ValueError("cannot split this batch")  # split_refusal said so first


def _padded_chunks(inputs: dict, split: int) -> list[dict]:
    rows = int(inputs["input_ids"].shape[0])
    out = []
    for a, b in _even_ranges(rows, split):
        out.append(_trim_padding({k: v[a:b] for k, v in inputs.items()}))
    return out


def _even_ranges(n: int, k: int) -> list[tuple[int, int]]:
    """Like torch.tensor_split: k contiguous ranges whose sizes differ by at most one; empty ones dropped."""
    k = max(1, min(k, n))
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        size = base + (1 if i < extra else 0)
        if size:
            out.append((start, start + size))
        start += size
    return out


def _trim_padding(chunk: dict) -> dict:
    """Drop columns that are padding in every row of the chunk (they change nothing for the real tokens)."""
    mask = chunk.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return chunk
    used = mask.any(dim=0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    if length >= mask.shape[1]:
        return chunk
    full = mask.shape[1]
    return {k: (v[:, :length] if torch.is_tensor(v) and v.dim() >= 2 and v.shape[1] == full else v)
            for k, v in chunk.items()}


def _doc_starts(inputs: dict) -> list[int]:
    pos = inputs["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return starts


def _packed_chunks(inputs: dict, split: int) -> list[dict]:
    """Cut one padding-free row at document boundaries into `split` pieces of about equal token counts."""
    total = int(inputs["input_ids"].shape[1])
    starts = _doc_starts(inputs)
    cuts, prev = [0], 0
    for j in range(1, split):
        target = j * total / split
        candidates = [s for s in starts if s > prev]
        if not candidates:
            break
        best = min(candidates, key=lambda s: abs(s - target))
        if best >= total:
            break
        cuts.append(best)
        prev = best
    cuts.append(total)
    cuts = sorted(set(cuts))
    return [_packed_slice(inputs, a, b, starts) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _packed_slice(inputs: dict, a: int, b: int, starts: list[int]) -> dict:
    out = {}
    for k, v in inputs.items():
        if k in PACKED_TOKEN_KEYS:
            out[k] = v[:, a:b]
    if "seq_idx" in out:
        out["seq_idx"] = out["seq_idx"] - out["seq_idx"][0, 0]
    _rebuild_boundaries(out, inputs, [s - a for s in starts if a <= s < b], b - a)
    return out


def _rebuild_boundaries(out: dict, like: dict, local_starts: list[int], length: int) -> None:
    ref = like.get("cu_seq_lens_q", like["input_ids"])
    cu = torch.tensor(local_starts + [length], dtype=torch.int32, device=ref.device)
    for k in ("cu_seq_lens_q", "cu_seq_lens_k"):
        if k in like:
            out[k] = cu
    longest = int((cu[1:] - cu[:-1]).max()) if cu.numel() > 1 else length
    for k in ("max_length_q", "max_length_k"):
        if k in like:
            out[k] = longest


def truncate(inputs: dict, max_len: int) -> dict:
    """The batch with every row (padded) or document (packed) cut to `max_len` tokens."""
    kind = batch_kind(inputs)
    if kind == "padded":
        full = inputs["input_ids"].shape[1]
        if full <= max_len:
            return inputs
        return {k: (v[:, :max_len] if torch.is_tensor(v) and v.dim() >= 2 and v.shape[1] == full else v)
                for k, v in inputs.items()}
    if kind == "packed":
        pos = inputs["position_ids"][0]
        keep = pos < max_len
        if bool(keep.all()):
            return inputs
        out = {k: v[:, keep] for k, v in inputs.items() if k in PACKED_TOKEN_KEYS}
        new_pos = out["position_ids"][0]
        starts = (new_pos == 0).nonzero().flatten().tolist()
        if "seq_idx" in out:
            lengths = torch.tensor(starts[1:] + [new_pos.numel()]) - torch.tensor(starts)
            out["seq_idx"] = torch.repeat_interleave(
                torch.arange(len(starts), dtype=inputs["seq_idx"].dtype), lengths).to(new_pos.device)[None]
        _rebuild_boundaries(out, inputs, starts, int(new_pos.numel()))
        return out
    return inputs


def truncate_in_place(batch: dict, max_len: int) -> None:
    new = truncate(batch, max_len)
    if new is batch:
        return
    for k in list(batch.keys()):
        if k not in new:
            del batch[k]
    for k, v in new.items():
        batch[k] = v


def label_tokens(inputs: dict) -> torch.Tensor:
    """Tokens the loss learns from in this batch, counted as the Trainer's num_items_in_batch does."""
    if "shift_labels" in inputs:
        return (inputs["shift_labels"] != -100).sum()
    return (inputs["labels"][..., 1:] != -100).sum()


# -- gradients ---------------------------------------------------------------------------------------------

class GradSnapshot:
    """The trainable gradients before an attempt. Gradients that are None (the first micro-batch of a
    window) cost nothing; others are cloned on their device when they fit under `limit` bytes."""

    def __init__(self, params: list, limit: int | None):
        self.params = params
        self.saved: list = []
        self.complete = True
        total = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        if limit is not None and total > limit:
            self.complete = False     # an OOM in backward cannot be undone in-step
            return
        try:
            self.saved = [None if p.grad is None else p.grad.detach().clone() for p in params]
        except torch.OutOfMemoryError:
            self.saved, self.complete = [], False   # no room for the copy: same as too large

    @property
    def empty(self) -> bool:
        return all(g is None for g in self.saved) if self.complete else False

    def restore(self) -> bool:
        if not self.complete:
            return False
        for p, g in zip(self.params, self.saved):
            if g is None:
                p.grad = None
            elif p.grad is not None and p.grad.shape == g.shape:
                p.grad.copy_(g)       # in place: DDP may hold the grad as a bucket view
            else:
                p.grad = g
        return True

    def drop(self) -> None:
        self.saved = []


def scale_grads(params: list, factor: float) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.mul_(factor)


# -- one failed attempt ------------------------------------------------------------------------------------

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


class PeerFailed(Exception):
    """Another rank ran out of memory in this forward; every rank abandons the attempt together."""


# -- random number generators ------------------------------------------------------------------------------

def rng_state() -> dict:
    """Every generator a step draws from (dropout, sampling): the probe and an emergency save put it back."""
    import random

    import numpy as np
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


# -- SFTTrainer's per-call side effects --------------------------------------------------------------------

MERGED_METRICS = ("entropy", "mean_token_accuracy")


class SideEffects:
    """SFTTrainer.compute_loss appends entropy and token accuracy to trainer._metrics[mode] once per call and
    adds to trainer._total_train_tokens. Undo a failed attempt; merge a split attempt back into one entry."""

    def __init__(self, trainer, mode: str):
        self.trainer, self.mode = trainer, mode
        metrics = getattr(trainer, "_metrics", None)
        self.metrics = metrics[mode] if metrics is not None else None
        self.lengths = {k: len(v) for k, v in self.metrics.items()} if self.metrics is not None else {}
        self.num_tokens = list(self.metrics.get("num_tokens", [])) if self.metrics is not None else []
        self.total_tokens = getattr(trainer, "_total_train_tokens", None)

    def undo(self) -> None:
        if self.metrics is not None:
            for key in list(self.metrics.keys()):
                if key == "num_tokens":
                    self.metrics[key] = list(self.num_tokens)
                elif key in self.lengths:
                    del self.metrics[key][self.lengths[key]:]
                else:
                    del self.metrics[key]
            if "num_tokens" not in self.lengths and "num_tokens" in self.metrics:
                del self.metrics["num_tokens"]
        if self.total_tokens is not None:
            self.trainer._total_train_tokens = self.total_tokens

    def merge(self, weights: list[float]) -> None:
        """Replace the per-chunk entries by the one value the unsplit call would have appended: each is
        sum / count over the chunk's valid tokens, so the whole is the count-weighted mean."""
        if self.metrics is None or len(weights) < 2:
            return
        total = sum(weights)
        for key in MERGED_METRICS:
            values = self.metrics.get(key)
            if values is None:
                continue
            start = self.lengths.get(key, 0)
            new = values[start:]
            if len(new) != len(weights):
                continue
            merged = sum(v * w for v, w in zip(new, weights)) / total if total > 0 else 0.0
            del values[start:]
            values.append(merged)


# -- several processes ------------------------------------------------------------------------------------

def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def any_rank(flag: bool, device) -> bool:
    """True when `flag` is True on any rank. Every rank calls this at the same points, so all of them retry
    (or go on) together; an OOM on one rank while the others wait in a collective would hang the job.
    Single process: returns flag."""
    if not distributed():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def sum_ranks(values: list[float], device) -> list[float]:
    if not distributed() or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def no_sync(model):
    """Accumulate locally (no DDP all-reduce in backward); the trainer reduces once after all chunks."""
    return model.no_sync() if distributed() and hasattr(model, "no_sync") else nullcontext()


def all_reduce_grads(params: list) -> None:
    """What DDP's backward does on the last micro-batch: average the gradients over the ranks."""
    if not distributed():
        return
    world = torch.distributed.get_world_size()
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict = {}
    for g in grads:
        by_dtype.setdefault((g.dtype, g.device), []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        torch.distributed.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for g in group:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


# -- memory --------------------------------------------------------------------------------------------------

def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text)


def on_cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def memory_in_use() -> int:
    """Bytes held now: the CUDA caching allocator's reservation on GPU, the resident set on CPU."""
    if on_cuda():
        return int(torch.cuda.memory_reserved())
    return int(psutil.Process().memory_info().rss)


def allocated() -> int | None:
    """Bytes held by live tensors on the current GPU (None on CPU: there is nothing to compare)."""
    return int(torch.cuda.memory_allocated()) if on_cuda() else None


def release() -> None:
    gc.collect()
    if on_cuda():
        torch.cuda.empty_cache()


def released(baseline: int | None) -> tuple[bool, int | None]:
    """Whether the memory allocated before the attempt is all that is allocated now (small slack for the
    allocator's own bookkeeping and the rebuilt boundary tensors of packed chunks)."""
    now = allocated()
    if baseline is None or now is None:
        return True, now
    slack = max(8 << 20, baseline // 200)
    return now <= baseline + slack, now


_SNAPSHOT_LIMIT: list = []


def snapshot_limit() -> int | None:
    """Largest gradient snapshot kept on the device: 2% of the GPU (at least 256 MiB). None on CPU."""
    if not on_cuda():
        return None
    if not _SNAPSHOT_LIMIT:
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        _SNAPSHOT_LIMIT.append(max(256 << 20, total // 50))
    return _SNAPSHOT_LIMIT[0]


def device_name_and_memory() -> tuple[str, int]:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return props.name, int(props.total_memory)
    return "cpu", int(psutil.virtual_memory().total)


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
