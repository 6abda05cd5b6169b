"""The [distributed] section's rules that the profile alone decides: GPUs given twice, node_rank >= nnodes,
model_parallel with several processes, FSDP with an optimizer it cannot shard, ...

Part of the one validator (validate.py calls `problems`), so the CLI, the engine and the builder's form
agree. What depends on the machine (how many GPUs exist, a port in use, what "auto" picks) is decided at
launch by engine/distributed/layout.py, which builds on these rules.
"""
from __future__ import annotations

from .schema import BITSANDBYTES_OPTIMIZERS, Profile
from .problems import Problem

STRATEGIES = ("ddp", "fsdp", "model_parallel")   # what "auto" can become
# bitsandbytes keeps its optimizer state in its own (non-DTensor) buffers: FSDP cannot shard them.
FSDP_INCOMPATIBLE_OPTIMIZERS = BITSANDBYTES_OPTIMIZERS


def parse_gpus(text: str) -> tuple[list[int] | str | None, str | None]:
    """("all" | [indices] | None for empty, problem or None)."""
    text = (text or "").strip()
    if not text:
        return None, None
    if text == "all":
        return "all", None
    out: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            return None, f'"{item}" is not a GPU index'
        if int(item) in out:
            return None, f"GPU {item} is given twice"
        out.append(int(item))
    return out, None


def problems(p: Profile) -> list[Problem]:
    d, out = p.distributed, []
    gpus, bad = parse_gpus(d.gpus)
    if bad:
        out.append(Problem("distributed.gpus", bad, 'list each GPU once, e.g. gpus = "0,1", or gpus = "all"'))
    if d.nnodes > 1 and not d.rdzv_endpoint:
        out.append(Problem("distributed.rdzv_endpoint", f"nnodes = {d.nnodes} needs the address of machine 0",
                           'set rdzv_endpoint = "HOST:PORT" (machine 0\'s address and a free port), the same on '
                           "every machine"))
    if d.rdzv_endpoint and endpoint_problem(d.rdzv_endpoint):
        out.append(Problem("distributed.rdzv_endpoint", endpoint_problem(d.rdzv_endpoint),
                           'write it as HOST:PORT, e.g. "10.0.0.1:29500"'))
    if d.node_rank >= d.nnodes:
        out.append(Problem("distributed.node_rank", f"node_rank = {d.node_rank} but nnodes = {d.nnodes}",
                           f"number the machines 0 to {d.nnodes - 1}"))
    if d.strategy == "model_parallel":
        if isinstance(d.processes, int) and d.processes > 1:
            out.append(Problem("distributed.processes", f"model_parallel runs one process, not {d.processes}",
                               'leave processes = "auto", or use strategy = "ddp" or "fsdp" for one process per GPU'))
        if d.nnodes > 1:
            out.append(Problem("distributed.strategy", "model_parallel splits a model over one machine's GPUs",
                               'use strategy = "fsdp" to shard a model over several machines'))
        if isinstance(gpus, list) and len(gpus) < 2:
            out.append(Problem("distributed.gpus", "model_parallel needs at least two GPUs",
                               'list them, e.g. gpus = "0,1", or gpus = "all"'))
    if isinstance(gpus, list) and isinstance(d.processes, int) and d.strategy != "model_parallel" \
            and d.processes != len(gpus):
        out.append(Problem("distributed.processes", f"processes = {d.processes} but gpus lists {len(gpus)} GPUs",
                           'each process trains on its own GPU: leave processes = "auto", or list as many GPUs'))
    if d.strategy == "fsdp":
        if p.training.optimizer in FSDP_INCOMPATIBLE_OPTIMIZERS:
            out.append(Problem("training.optimizer",
                               f'{p.training.optimizer} cannot be sharded by strategy = "fsdp"',
                               'use optimizer = "adamw_torch" (sharded, so its 32-bit state is split over the GPUs)'))
        if p.world_size == 1:
            out.append(Problem("distributed.strategy", "fsdp shards over several processes, but this layout has one",
                               'list several GPUs (gpus = "0,1"), set processes, or use strategy = "auto"'))
    if p.training.micro_batch == "auto" and d.strategy == "fsdp":
        out.append(Problem("training.micro_batch", AUTO_FSDP, AUTO_FSDP_FIX))
    return out


# micro_batch = "auto" picks how many row-chunks each batch runs as (engine/train/probe.py); under DDP the
# ranks search together. FSDP reduces its gradients itself, so a batch cannot be split exactly there.
AUTO_FSDP = '"auto" splits each batch into row-chunks, which strategy = "fsdp" cannot do exactly'
AUTO_FSDP_FIX = ('set a number (`tunetop estimate PROFILE --gpus N --strategy fsdp` shows the peak per GPU), '
                 'or use strategy = "ddp"')


def endpoint_problem(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host:
        return f'"{endpoint}" has no port'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'"{port}" is not a port number'
    return None
