"""Host telemetry: CPU, RAM, swap, and the free disk where the runs live. Each figure that cannot be read
is None ("n/a")."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class HostInfo:
    cpu_percent: float | None = None     # whole machine, since the previous sample
    cpu_count: int | None = None
    load1: float | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    swap_used: int | None = None
    swap_total: int | None = None
    disk_free: int | None = None
    disk_total: int | None = None
    disk_path: str | None = None         # the folder measured (the runs root, or its nearest existing parent)


def sample_host(runs_root: Path | str | None) -> HostInfo:
    # cpu_percent(None) compares with the previous call: the first one says 0.0, later ones are right.
    cpu = _try(lambda: psutil.cpu_percent(interval=None))
    vm = _try(psutil.virtual_memory)
    sw = _try(psutil.swap_memory)
    load = _try(lambda: os.getloadavg()[0])
    path = _existing(Path(runs_root)) if runs_root else None
    du = _try(lambda: psutil.disk_usage(str(path))) if path else None
    return HostInfo(cpu_percent=cpu, cpu_count=_try(psutil.cpu_count), load1=load,
                    ram_used=getattr(vm, "used", None), ram_total=getattr(vm, "total", None),
                    swap_used=getattr(sw, "used", None), swap_total=getattr(sw, "total", None),
                    disk_free=getattr(du, "free", None), disk_total=getattr(du, "total", None),
                    disk_path=str(path) if path else None)


def _existing(path: Path) -> Path | None:
    # The runs root may not exist yet (no run so far): measure the disk it will be created on.
    for p in (path, *path.parents):
        try:
            if p.exists():
                return p
        except OSError:
            continue
    return None


def _try(fn):
    try:
        return fn()
    except Exception:
        return None
