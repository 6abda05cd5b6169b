"""The engine's side of several processes (torchrun launches one engine per rank; engine/distributed/ plans it).

- Who writes: global rank 0 writes events and checkpoints' shared files into the run directory. On a
  machine other than machine 0, the local rank 0 keeps that machine's own small run directory (`start`,
  `log`, `end`, the engine log), so `tunetop ls`, `stop` and `logs` work there. Every other rank prints its
  log lines to engine.log, where torchrun prefixes them with "[rankN]: ".
- Stopping: the agent forwards SIGTERM to every rank, but the signal can land on either side of a step
  boundary on different ranks; after each optimizer step the ranks agree (one all-reduce of a flag), so all
  of them finish the same step and save the same checkpoint.
- Dying: a rank that loses a peer (killed, crashed) leaves without an `end` event (the run is
  "interrupted" and resumable); a rank whose agent died (kill -9 of torchrun) exits within a second.
  Collectives wait at most TUNETOP_DIST_TIMEOUT_S (the process-group timeout).
- The strategy's Trainer settings (DDP, FSDP2) and model placement (QLoRA per-rank device, FSDP-QLoRA's
  quant storage, model_parallel's device map).
- What the `start` and `step` events carry about every rank (device, memory peak).

Light at import: torch only inside functions (main.py imports this before torch).
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..distributed.command import DEFAULT_TIMEOUT_S, TIMEOUT_ENV
from ..events import EventWriter


@dataclass(frozen=True)
class Ranks:
    rank: int
    local_rank: int
    world_size: int
    node_rank: int
    nnodes: int
    strategy: str
    reason: str

    @property
    def torchrun(self) -> bool:
        return "TORCHELASTIC_RUN_ID" in os.environ

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def writes_events(self) -> bool:
        """Global rank 0, or local rank 0 of a machine other than machine 0 (its own run directory)."""
        return self.rank == 0 or (self.local_rank == 0 and self.node_rank > 0)

    @property
    def main_writer(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return Ranks(rank=int(env.get("RANK", "0")), local_rank=int(env.get("LOCAL_RANK", "0")), world_size=world,
                 node_rank=int(env.get("GROUP_RANK", env.get("TUNETOP_NODE_RANK", "0"))),
                 nnodes=int(env.get("TUNETOP_NODES", "1")),
                 strategy=env.get("TUNETOP_STRATEGY") or ("ddp" if world > 1 else "single"),
                 reason=env.get("TUNETOP_STRATEGY_REASON", ""))


def timeout_s() -> int:
    raw = os.environ.get(TIMEOUT_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_TIMEOUT_S


# -- writing -------------------------------------------------------------------------------------------------

class RankLogWriter:
    """The event writer of a rank that writes no events: its log lines go to engine.log (prefixed by torchrun)."""

    def __init__(self, rank: int):
        self.rank = rank

    def write(self, type_: str, **fields) -> dict:
        if type_ == "log":
            print(f"{fields.get('level', 'info')}: {fields.get('message', '')}", file=sys.stderr, flush=True)
        return {"type": type_, **fields}

    def subscribe(self, listener, on_close=None) -> None:
        pass

    def close(self) -> None:
        pass


class MainWriter(EventWriter):
    """Rank 0's writer: `step` events also carry every rank's memory (step_extra, set by RankMemory)."""

    step_extra: dict | None = None

    def write(self, type_: str, **fields) -> dict:
        if type_ == "step" and self.step_extra:
            fields = {**fields, **self.step_extra}
            self.step_extra = None
        return super().write(type_, **fields)


def event_writer(run_dir: Path):
    """The events writer for this process: the real one where this rank writes events, else RankLogWriter."""
    from .. import rundir
    r = ranks()
    if not r.writes_events:
        return RankLogWriter(r.rank)
    return MainWriter(run_dir / rundir.EVENTS) if r.distributed else EventWriter(run_dir / rundir.EVENTS)


def setup(run_dir: Path) -> Ranks:
    """Call first in every rank: starts the agent watchdog under torchrun."""
    r = ranks()
    if r.torchrun:
        _watch_agent(r)
    return r


def _watch_agent(r: Ranks) -> None:
    """torchrun starts each rank in its own session: a kill -9 of the agent would orphan the ranks, which
    would train on (or wait in a collective) with nobody to collect them. Leave as soon as the parent is gone."""
    parent = os.getppid()
    print(f"rank {r.rank} of {r.world_size} (node {r.node_rank}, pid {os.getpid()}): watching the torchrun agent "
          f"(pid {parent})", file=sys.stderr, flush=True)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                print(f"rank {r.rank}: the torchrun agent (pid {parent}) is gone; exiting", file=sys.stderr,
                      flush=True)
                os._exit(1)

    threading.Thread(target=watch, name="tunetop-agent-watch", daemon=True).start()


# -- errors ---------------------------------------------------------------------------------------------------

_PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket closed",
              "connection refused", "timed out", "timeout", "nccl communicator was aborted", "ncclremoteerror",
              "process group", "gloo", "rendezvous")


def peer_lost(exc: BaseException) -> bool:
    """A collective failed because another rank is gone: this rank leaves without an `end` event."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    kinds = tuple(k for k in (getattr(dist, "DistError", None), RuntimeError) if k is not None)
    text = str(exc).lower()
    return isinstance(exc, kinds) and any(s in text for s in _PEER_LOST)


def leave_now(code: int = 1) -> None:
    """Exit at once after a lost peer: a normal interpreter exit tears the process group down, which waits
    on the dead rank (measured: about 20 s more before every process was gone). Events are flushed per line."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# -- the Trainer's settings and the model's placement ------------------------------------------------------

def sft_overrides(model, placement) -> dict:
    """SFTConfig fields for the strategy (empty for one process)."""
    r = ranks()
    if not r.distributed:
        return {}
    out = dict(ddp_timeout=timeout_s(), ddp_backend="nccl" if placement.device == "cuda" else "gloo",
               ddp_find_unused_parameters=False,
               # Several machines: each machine's local rank 0 saves checkpoints into its own run directory,
               # so a resume finds them on every machine without a shared file system.
               save_on_each_node=r.nnodes > 1)
    if r.strategy == "fsdp":
        out["fsdp"] = "full_shard auto_wrap"
        out["fsdp_config"] = {"version": 2, "transformer_layer_cls_to_wrap": layer_classes(model),
                              "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT",
                              "cpu_ram_efficient_loading": False}
    return out


def layer_classes(model) -> list[str]:
    """The decoder layer class FSDP wraps one unit per instance of (HF's own `_no_split_modules`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = list(getattr(base, "_no_split_modules", None) or [])
    if not names:
        names = sorted({type(m).__name__ for m in base.modules() if type(m).__name__.endswith("DecoderLayer")})
    return names


def model_kwargs(method: str, placement, compute_dtype=None) -> dict:
    """from_pretrained() keyword changes for the strategy: where the weights go, and for FSDP-QLoRA the
    storage dtype that lets FSDP shard the 4-bit weights (it must equal the compute dtype)."""
    r = ranks()
    out: dict = {}
    if r.strategy == "model_parallel" and placement.device == "cuda":
        out.update(model_parallel_device_map())
    elif r.distributed and method == "qlora":
        if r.strategy == "fsdp":
            out["device_map"] = None              # FSDP places the shards itself
            out["bnb_4bit_quant_storage"] = compute_dtype
        else:                                     # DDP: every rank loads the 4-bit model on its own device
            out["device_map"] = {"": r.local_rank if placement.device == "cuda" else "cpu"}
    return out


def apply_model_kwargs(kwargs: dict, method: str, placement) -> None:
    """Apply model_kwargs to load_model's from_pretrained keywords in place."""
    quant = kwargs.get("quantization_config")
    extra = model_kwargs(method, placement, getattr(quant, "bnb_4bit_compute_dtype", None))
    storage = extra.pop("bnb_4bit_quant_storage", None)
    if storage is not None and quant is not None:
        quant.bnb_4bit_quant_storage = storage
    kwargs.update(extra)


def model_parallel_device_map() -> dict:
    """model_parallel: accelerate's balanced map over the visible GPUs, each capped below its memory so the
    activations of its layers have room (transformers calls infer_auto_device_map with these caps)."""
    import torch
    caps = {i: int(torch.cuda.get_device_properties(i).total_memory * 0.85) for i in range(torch.cuda.device_count())}
    return {"device_map": "balanced", "max_memory": caps}


# -- stopping together, every rank's memory, what `start` says -----------------------------------------------

def callbacks(events, graceful, stop, writer) -> list:
    """The Trainer callbacks in the order they must run: every rank's memory gathered before `step` is written."""
    from .distributed_callbacks import NodeStart, RankMemory
    r = ranks()
    if not r.distributed:
        return [events, graceful]
    out = [RankMemory(writer, r), events, graceful]
    if r.writes_events and not r.main_writer:
        out.append(NodeStart(writer, events))
    return out


def attach(trainer, stop) -> None:
    """After every other callback is in place: the ranks agree on stopping and saving (StopAgreement)."""
    if ranks().distributed:
        from .distributed_callbacks import StopAgreement
        trainer.add_callback(StopAgreement(stop))


def start_fields(device) -> dict:
    """world_size, nodes, strategy and each rank's device for the `start` event (a collective: every rank)."""
    r = ranks()
    me = {"rank": r.rank, "node_rank": r.node_rank, "local_rank": r.local_rank, "host": socket.gethostname(),
          "pid": os.getpid(), "device": _device_name(device)}
    everyone = [me]
    if r.distributed:
        import torch.distributed as dist
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, me)
    return {"world_size": r.world_size, "nodes": r.nnodes, "strategy": r.strategy, "strategy_reason": r.reason,
            "ranks": everyone}


def _device_name(device) -> str:
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        physical = visible.split(",")[index] if visible and index < len(visible.split(",")) else str(index)
        return f"cuda:{physical} {torch.cuda.get_device_name(index)}"
    return device.type


# -- resuming on another world size ----------------------------------------------------------------------

def check_world_change(run_dir: Path, world_size: int, strategy: str, log) -> None:
    """A resume on a different number of processes: a warning (the data order changes), or a refusal for a
    sharded checkpoint. Never silent."""
    from .. import events as ev
    from .errors import SetupError
    before = None
    for e in ev.read_all(run_dir / "events.jsonl"):
        if e.get("type") == "start":
            before = (int(e.get("world_size") or 1), e.get("strategy") or "single")
    if before is None or before[0] == world_size:
        return
    was, was_strategy = before
    if "fsdp" in (strategy, was_strategy) and strategy != was_strategy:
        raise SetupError(f"this run's checkpoints were written under {was_strategy} and it now starts "
                         f"under {strategy}", f"resume it with the strategy it had (strategy = \"{was_strategy}\")")
    log(f"resuming with {world_size} processes; the checkpoint was written by {was}: every optimizer step now "
        f"sees {world_size} x micro_batch x grad_accum rows, so the data order and the step count per epoch "
        f"change (for the same order, resume with {was} processes)", "warning")
