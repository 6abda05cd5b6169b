"""Where a run's processes go: how many, on which GPUs, on how many machines, with which strategy.

Two steps, so that each check happens where its facts are known:

- what the profile alone says is impossible (GPUs given twice, node_rank >= nnodes, model_parallel with
  several processes, FSDP with an optimizer it cannot shard, ...) is checked by the one validator, with the
  rules in engine/profile/distributed_rules.py, so the CLI, the engine and the builder's form agree.
- `resolve(profile, gpu_count, ...)`: the layout on this machine at launch, with the GPUs counted (a GPU
  that does not exist, a port in use) and `strategy = "auto"` decided, saying what it picked and why.

Torch-free: the launcher and the dashboard import it.
"""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field, replace
from typing import Callable

from ..errors import TunetopError
from ..profile import Profile
from ..profile.distributed_rules import AUTO_FSDP, AUTO_FSDP_FIX, FSDP_INCOMPATIBLE_OPTIMIZERS, parse_gpus


class LayoutError(TunetopError):
    """A distributed layout that cannot run on this machine (names the field and the fix)."""


@dataclass(frozen=True)
class Layout:
    strategy: str                 # "single", "ddp", "fsdp" or "model_parallel"
    processes: int                # per machine
    nnodes: int = 1
    node_rank: int = 0
    gpus: tuple[int, ...] = ()    # physical GPU indices (CUDA_VISIBLE_DEVICES); () = CPU or the default device
    device: str = "cpu"           # "cuda" or "cpu"
    rdzv_endpoint: str = ""
    reason: str = ""              # why this strategy (shown by validate, the start event, the dashboard)
    notes: tuple[str, ...] = field(default=())

    @property
    def world_size(self) -> int:
        return self.processes * self.nnodes

    @property
    def uses_torchrun(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"

    def describe(self) -> str:
        if self.strategy == "single":
            return f"one process on {'GPU ' + str(self.gpus[0]) if self.gpus else self.device}"
        where = (f"GPUs {','.join(map(str, self.gpus))}" if self.gpus else f"{self.processes} CPU processes (gloo)")
        nodes = f" x {self.nnodes} machines (this is node {self.node_rank})" if self.nnodes > 1 else ""
        if self.strategy == "model_parallel":
            return (f"model_parallel: one process, layers split over {where} (`tunetop estimate PROFILE --gpus "
                    f"{len(self.gpus)} --strategy model_parallel` shows which layers go where)")
        return f"{self.strategy}: world size {self.world_size}, {where}{nodes}"

    def to_event(self) -> dict:
        """The fields the `start` event carries about the layout."""
        return {"strategy": self.strategy, "strategy_reason": self.reason, "nodes": self.nnodes,
                "node_rank": self.node_rank, "processes_per_node": self.processes,
                "gpus": list(self.gpus), "backend": self.backend if self.uses_torchrun else None}


# -- this machine, at launch -------------------------------------------------------------------------------

def resolve(p: Profile, gpu_count: int | None, *, per_gpu_bytes: int | None = None,
            fits_one_gpu: Callable[[], bool | None] | None = None,
            fits_sharded: Callable[[int], bool | None] | None = None,
            check_port: bool = True) -> Layout:
    """The layout to launch. gpu_count: GPUs this machine has (0 or None: none found).

    fits_one_gpu(): does the estimate fit one GPU (None: unknown). fits_sharded(world): does the FSDP
    estimate per GPU fit at that world size. Both are only called for strategy = "auto".
    Raises LayoutError naming the field.
    """
    d = p.distributed
    found = gpu_count or 0
    gpus, bad = parse_gpus(d.gpus)
    if bad:
        raise LayoutError(f"distributed.gpus: {bad}", 'list each GPU once, e.g. gpus = "0,1"')
    if gpus == "all":
        if not found:
            raise LayoutError('distributed.gpus = "all" but no GPU was found on this machine',
                              "use processes = N (--processes N) for N CPU processes, or gpus = \"\"")
        gpus = list(range(found))
    if isinstance(gpus, list):
        missing = [g for g in gpus if g >= found]
        if missing:
            have = f"{found} GPU{'s' if found != 1 else ''} ({', '.join(map(str, range(found)))})" if found \
                else "no GPU"
            raise LayoutError(f"distributed.gpus: GPU {missing[0]} does not exist: this machine has {have}",
                              'pick from the GPUs `tunetop` lists, or gpus = "all"')

    device = "cuda" if found else "cpu"
    explicit = d.processes if isinstance(d.processes, int) else None
    if gpus is None:   # no GPU list: one process, or `processes` of them on the first GPUs (or the CPU)
        n = explicit or 1
        if device == "cuda" and n > found:
            raise LayoutError(f"distributed.processes = {n} but this machine has {found} GPU(s)",
                              f"use at most {found} processes, one per GPU")
        gpus = list(range(n)) if device == "cuda" and n > 1 else []
    else:
        device = "cuda"
        n = len(gpus)

    strategy, reason = d.strategy, f'strategy = "{d.strategy}" in the profile'
    if strategy == "auto":
        strategy, reason = _auto(p, n * d.nnodes, device, fits_one_gpu, fits_sharded)
    if strategy == "model_parallel":
        if device != "cuda" or len(gpus) < 2:
            raise LayoutError("distributed.strategy = \"model_parallel\" needs at least two GPUs on this machine",
                              'list them with gpus = "0,1" (--gpus 0,1), or use strategy = "ddp" with processes')
        n = 1
    elif n * d.nnodes == 1:
        strategy, reason = "single", "one process"
    if strategy == "fsdp" and p.training.micro_batch == "auto":
        raise LayoutError(f"training.micro_batch: {AUTO_FSDP} ({reason})", AUTO_FSDP_FIX)
    if strategy == "fsdp" and p.training.optimizer in FSDP_INCOMPATIBLE_OPTIMIZERS:
        raise LayoutError(f'training.optimizer = "{p.training.optimizer}" cannot be sharded by fsdp '
                          f"({reason})", 'use optimizer = "adamw_torch", or strategy = "ddp"')
    layout = Layout(strategy=strategy, processes=n, nnodes=d.nnodes, node_rank=d.node_rank, gpus=tuple(gpus),
                    device=device, rdzv_endpoint=d.rdzv_endpoint, reason=reason)
    if check_port and layout.nnodes > 1 and layout.node_rank == 0:
        _check_port_free(layout.rdzv_endpoint)
    return layout


def _auto(p: Profile, world: int, device: str, fits_one_gpu, fits_sharded) -> tuple[str, str]:
    if world <= 1:
        return "single", "one process"
    if device == "cpu":
        return "ddp", "CPU processes: data parallel over gloo (there is no GPU memory to save by sharding)"
    one = fits_one_gpu() if fits_one_gpu else None
    if one is None:
        return "ddp", "the estimate is not available for this model: data parallel, a full copy per GPU"
    if one:
        return "ddp", "the estimate fits one GPU: data parallel (a full copy per GPU) is fastest"
    if p.method.type != "qlora":
        return "fsdp", f"the estimate does not fit one GPU: fsdp shards {p.method.type}'s weights, gradients " \
                       f"and optimizer state over {world} GPUs"
    sharded = fits_sharded(world) if fits_sharded else None
    if sharded is False and p.distributed.nnodes == 1:
        return "model_parallel", ("the 4-bit model does not fit one GPU, nor sharded over "
                                  f"{world}: model_parallel splits its layers over the GPUs")
    return "fsdp", f"the 4-bit model does not fit one GPU: FSDP-QLoRA shards it over {world} GPUs"


def _check_port_free(endpoint: str) -> None:
    """Machine 0 hosts the rendezvous store on this port: it must be free here."""
    host, _, port = endpoint.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LayoutError(f"distributed.rdzv_endpoint: port {port} is already in use on this machine",
                                  "pick another port (the same on every machine), e.g. "
                                  f"{host}:{int(port) + 1}") from None
            raise


def with_overrides(p: Profile, **values) -> Profile:
    """The profile with command-line values (--gpus, --processes, ...) in its [distributed] section;
    None means not given. Validate the result again: the flags obey the same rules as the file."""
    given = {k: v for k, v in values.items() if v is not None}
    return replace(p, distributed=replace(p.distributed, **given)) if given else p
