"""The torchrun command line and environment for a layout.

The engine runs under torch's own launcher, `torch.distributed.run` (torchrun), through the thin wrapper
engine/distributed/agent.py, which only makes the agent ignore SIGHUP as a single-process engine does.
The agent is the process the launcher records in engine.pid: stop sends it SIGTERM, it forwards that to
every rank (--signals-to-handle) and waits --shutdown-timeout seconds for them to checkpoint before it
SIGKILLs them. A rank that dies makes the agent tear the others down (--max-restarts 0: a failed run is
resumed by the user, not restarted in a loop).

Rendezvous: one machine uses --standalone (a store on a free port, so two runs never collide). Several
machines use the static rendezvous (--node-rank, --master-addr, --master-port): with it, node_rank decides
which machine holds global rank 0 (c10d's dynamic rendezvous would rank machines in arrival order, and the
run directory with the events would end up wherever rank 0 happened to land).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .layout import Layout

AGENT_MODULE = "engine.distributed.agent"
RANK_LOGS = "ranks"
# How long the agent waits for the ranks after forwarding a stop (finish the step, write a checkpoint).
SHUTDOWN_ENV = "TUNETOP_DIST_SHUTDOWN_S"
DEFAULT_SHUTDOWN_S = 120
# The process-group timeout: the longest any rank waits in one collective for the others.
TIMEOUT_ENV = "TUNETOP_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600


def shutdown_timeout() -> int:
    raw = os.environ.get(SHUTDOWN_ENV, "")
    return int(raw) if raw.isdigit() else DEFAULT_SHUTDOWN_S


def torchrun_command(layout: Layout, run_dir: Path, engine_args: list[str], run_id: str = "") -> list[str]:
    """`python -m engine.distributed.agent <torchrun options> -m engine.train RUN_DIR [engine args]`."""
    cmd = [sys.executable, "-m", AGENT_MODULE, "--nproc-per-node", str(layout.processes),
           "--nnodes", str(layout.nnodes)]
    if layout.nnodes == 1:
        cmd.append("--standalone")
    else:
        host, _, port = layout.rdzv_endpoint.rpartition(":")
        cmd += ["--node-rank", str(layout.node_rank), "--master-addr", host, "--master-port", port]
    cmd += ["--max-restarts", "0", "--monitor-interval", "0.5",
            "--signals-to-handle", "SIGTERM,SIGINT", "--shutdown-timeout", str(shutdown_timeout()),
            # Each rank's output also in its own file under ranks/, and in engine.log with "[rankN]: " in front.
            "--tee", "3", "--log-dir", str(run_dir / RANK_LOGS),
            "-m", "engine.train", str(run_dir), *engine_args]
    return cmd


def torchrun_env(layout: Layout, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment additions for the agent (and so for every rank)."""
    env: dict[str, str] = {}
    if layout.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, layout.gpus))
    elif layout.device == "cpu" and layout.uses_torchrun:
        env["CUDA_VISIBLE_DEVICES"] = ""   # CPU processes: never pick up a GPU by accident
    # Every line a rank prints carries its global rank in engine.log ("[rank1]: ...").
    env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = "[rank${rank}]: "
    env["TUNETOP_STRATEGY"] = layout.strategy
    env["TUNETOP_NODES"] = str(layout.nnodes)
    env["TUNETOP_NODE_RANK"] = str(layout.node_rank)
    env["TUNETOP_STRATEGY_REASON"] = layout.reason
    if layout.device == "cpu" and layout.uses_torchrun and "OMP_NUM_THREADS" not in (base or os.environ):
        # torchrun would set 1 thread per rank with a warning; say the same thing quietly, per core share.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // layout.processes))
    return env
