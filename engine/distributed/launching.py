"""What the launcher (engine/launch.py) asks at spawn time: one process, or torchrun with which options.

A profile that asks for nothing distributed (no gpus, processes auto or 1, one machine) never touches
NVML or the estimator here: single-process runs start exactly as before.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..profile import Profile
from .command import torchrun_command, torchrun_env
from .layout import Layout, resolve

LAYOUT_FILE = "layout.json"   # the layout of the latest launch, for resume and for readers


def wants_distribution(p: Profile) -> bool:
    d = p.distributed
    return bool(d.gpus.strip()) or (isinstance(d.processes, int) and d.processes > 1) or d.nnodes > 1 \
        or d.strategy == "model_parallel"


def gpu_cards():
    """This machine's GPUs (engine.plan.gpus.detect: NVML, never raises)."""
    from ..plan.gpus import detect
    cards, _why = detect()
    return cards


def plan(p: Profile, *, check_port: bool = True, cards=None) -> Layout:
    """The layout this machine would launch for the profile (LayoutError when it cannot)."""
    if not wants_distribution(p):
        return Layout(strategy="single", processes=1, reason="one process")
    cards = gpu_cards() if cards is None else cards
    fits_one = fits_sharded = None
    if p.distributed.strategy == "auto" and cards:
        from .estimate import fits_per_gpu
        smallest = min(c.total_bytes for c in cards)
        fits_one = lambda: fits_per_gpu(p, "ddp", 1, smallest)          # noqa: E731
        fits_sharded = lambda world: fits_per_gpu(p, "fsdp", world, smallest)  # noqa: E731
    return resolve(p, len(cards), fits_one_gpu=fits_one, fits_sharded=fits_sharded, check_port=check_port)


def distributed_argv(run_dir: Path, argv: list[str], env: dict) -> list[str]:
    """The launcher's hook: `python -m engine.train RUN_DIR ARGS...` unchanged for one process, or the
    torchrun command that runs it on every rank; `env` gets the layout's additions either way."""
    from .. import rundir
    cmd, extra, _layout = spawn_plan(run_dir, rundir.load_profile(run_dir), list(argv[4:]))
    env.update(extra)
    return cmd or argv


def spawn_plan(run_dir: Path, profile: Profile, engine_args: list[str]) -> tuple[list[str] | None, dict, Layout]:
    """(torchrun command or None for a plain single process, environment additions, layout). Writes
    layout.json so that readers (the dashboard, resume) see what was launched."""
    # A resume re-checks the port only where this machine hosts the rendezvous, as a fresh launch does.
    layout = plan(profile)
    if layout.strategy == "single":   # one process; a GPU picked by index is the only one it sees
        return None, ({"CUDA_VISIBLE_DEVICES": ",".join(map(str, layout.gpus))} if layout.gpus else {}), layout
    write_layout(run_dir, layout)
    # The ranks start after torchrun's agent: until rank 0 opens the stream, readers see an empty one, not
    # a missing one (which `tunetop watch` reports as deleted).
    (run_dir / "events.jsonl").touch()
    if not layout.uses_torchrun:   # model_parallel: one process that sees the chosen GPUs
        return None, torchrun_env(layout), layout
    return torchrun_command(layout, run_dir, engine_args), torchrun_env(layout), layout


def write_layout(run_dir: Path, layout: Layout) -> None:
    from ..profile import write_atomic
    data = {"world_size": layout.world_size, **layout.to_event(), "processes": layout.processes,
            "device": layout.device, "rdzv_endpoint": layout.rdzv_endpoint}
    write_atomic(run_dir / LAYOUT_FILE, json.dumps(data, indent=1))


def read_layout(run_dir: Path) -> dict | None:
    try:
        data = json.loads((run_dir / LAYOUT_FILE).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
