"""GPU telemetry behind a small interface, so the dashboard can be tested without a GPU.

    source.sample_devices()   -> [GpuInfo, ...] in CUDA order (CUDA_VISIBLE_DEVICES honoured)
    source.sample_processes() -> {display index: [ProcInfo, ...]}
    source.error              -> why no GPU can be read at all (shown instead of devices), else None

NvmlSource wraps every NVML call: a missing function or an NVML error gives None for that figure (the
UI shows "n/a"), never an exception. NVML is slow (devices about 1 s, processes about 2 s), so callers
sample from a thread.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import psutil

NO_GPU = "no NVIDIA GPU detected"
RETRY_S = 30.0   # how often a source that found no GPU looks again (a driver loaded later, a GPU hot-added)


@dataclass(frozen=True)
class GpuInfo:
    index: int                        # CUDA index: position in CUDA_VISIBLE_DEVICES (what the engine sees)
    nvml_index: int | None = None     # NVML / nvidia-smi index
    name: str | None = None
    uuid: str | None = None
    mem_used: int | None = None       # bytes
    mem_total: int | None = None
    util: int | None = None           # percent
    temp: int | None = None           # degrees C
    power: float | None = None        # watts
    power_limit: float | None = None
    error: str | None = None          # the device itself could not be read (it vanished, fell off the bus)


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    mem_used: int | None = None       # bytes of GPU memory; None where NVML cannot tell (MIG, WDDM)
    name: str | None = None
    run_id: str | None = None         # set by the dashboard for a tunetop engine (engine_owner)


class GpuSource:
    """The interface. `error` is set when no GPU can be read at all (no driver, no device)."""
    error: str | None = None

    def sample_devices(self) -> list[GpuInfo]:
        return []

    def sample_processes(self) -> dict[int, list[ProcInfo]]:
        return {}

    def close(self) -> None:
        pass


# -- CUDA_VISIBLE_DEVICES -----------------------------------------------------------------------------------

def visible_devices(env: str | None, count: int, uuids: list[str | None]) -> list[int]:
    """NVML indices in CUDA order. env is CUDA_VISIBLE_DEVICES (None: all devices in NVML order).

    Entries are indices or UUIDs (a unique prefix is enough, "GPU-" optional). Like CUDA, the list ends
    at the first entry that names no device, and a device listed twice counts once. The NVML order is the
    PCI bus order: the CUDA order too when CUDA_DEVICE_ORDER=PCI_BUS_ID (what nvidia-smi and most
    clusters use).
    """
    if env is None:
        return list(range(count))
    order: list[int] = []
    for raw in env.split(","):
        item = raw.strip()
        idx: int | None = None
        if item.isdigit() or (item.startswith("-") and item[1:].isdigit()):
            n = int(item)
            idx = n if 0 <= n < count else None
        elif item:
            want = item if item.startswith(("GPU-", "MIG-")) else "GPU-" + item
            hits = [i for i, u in enumerate(uuids) if u and u.startswith(want)]
            idx = hits[0] if len(hits) == 1 else None
        if idx is None or idx in order:
            break
        order.append(idx)
    return order


# -- NVML ---------------------------------------------------------------------------------------------------

class NvmlSource(GpuSource):
    """Production source. `nvml` is the pynvml module (injectable for tests); imported lazily."""

    def __init__(self, nvml=None, env: dict | None = None):
        self._nvml = nvml
        self._env = os.environ if env is None else env
        self._lock = threading.Lock()   # devices and processes may be sampled from different threads
        self._ready = False
        self._order: list[int] = []
        self._retry_at = 0.0
        self.error = None

    def _init(self) -> bool:
        if self._ready:
            return True
        # Without a driver every try fails the same way: try again now and then, not on every sample.
        if time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + RETRY_S
        try:
            if self._nvml is None:
                import pynvml
                self._nvml = pynvml
            self._nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ImportError ...
            self.error = f"{NO_GPU} ({_reason(exc)})"
            return False
        count = self._call("nvmlDeviceGetCount")
        if not count:
            self.error = NO_GPU if count == 0 else f"{NO_GPU} (NVML cannot count the devices)"
            self._call("nvmlShutdown")   # nvmlInit counts references: balance it before the next try
            return False
        uuids = [self._call("nvmlDeviceGetUUID", self._call("nvmlDeviceGetHandleByIndex", i)) for i in range(count)]
        self._order = visible_devices(self._env.get("CUDA_VISIBLE_DEVICES"), count, [_text(u) for u in uuids])
        if not self._order:
            self.error = f"{NO_GPU} (CUDA_VISIBLE_DEVICES={self._env.get('CUDA_VISIBLE_DEVICES')!r} hides every GPU)"
            self._call("nvmlShutdown")
            return False
        self.error = None
        self._ready = True
        return True

    def _call(self, fn: str, *args):
        """One NVML query; None if the function is missing or fails."""
        f = getattr(self._nvml, fn, None)
        if f is None or any(a is None for a in args):
            return None
        try:
            return f(*args)
        except Exception:
            return None

    def sample_devices(self) -> list[GpuInfo]:
        with self._lock:
            if not self._init():
                return []
            return [self._device(cuda_idx, nvml_idx) for cuda_idx, nvml_idx in enumerate(self._order)]

    def _device(self, cuda_idx: int, nvml_idx: int) -> GpuInfo:
        nv = self._nvml
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(nvml_idx)
        except Exception as exc:
            return GpuInfo(cuda_idx, nvml_idx, error=f"GPU lost: {_reason(exc)}")
        mem = self._call("nvmlDeviceGetMemoryInfo", handle)
        util = self._call("nvmlDeviceGetUtilizationRates", handle)
        temp_kind = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
        power = self._call("nvmlDeviceGetPowerUsage", handle)
        limit = self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        name = self._call("nvmlDeviceGetName", handle)
        info = GpuInfo(
            index=cuda_idx, nvml_index=nvml_idx, name=_text(name), uuid=_text(self._call("nvmlDeviceGetUUID", handle)),
            mem_used=_attr(mem, "used"), mem_total=_attr(mem, "total"), util=_attr(util, "gpu"),
            temp=_num(self._call("nvmlDeviceGetTemperature", handle, temp_kind)),
            power=power / 1000 if _num(power) is not None else None,
            power_limit=limit / 1000 if _num(limit) is not None else None)
        if name is None and mem is None and util is None:
            # Every query failed: the device is gone (fell off the bus) or the driver went away.
            return GpuInfo(cuda_idx, nvml_idx, error="GPU not responding (NVML errors on every query)")
        return info

    def sample_processes(self) -> dict[int, list[ProcInfo]]:
        with self._lock:
            if not self._init():
                return {}
            out: dict[int, list[ProcInfo]] = {}
            for cuda_idx, nvml_idx in enumerate(self._order):
                handle = self._call("nvmlDeviceGetHandleByIndex", nvml_idx)
                procs: dict[int, ProcInfo] = {}
                for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                    for p in self._call(fn, handle) or []:
                        pid = _attr(p, "pid")
                        if pid is None or pid in procs:
                            continue
                        mem = _attr(p, "usedGpuMemory")
                        # NVML reports "not available" as None or as a huge sentinel value.
                        mem = mem if mem is not None and mem < (1 << 60) else None
                        procs[pid] = ProcInfo(pid, mem, _proc_name(pid))
                out[cuda_idx] = sorted(procs.values(), key=lambda p: -(p.mem_used or 0))
            return out

    def close(self) -> None:
        with self._lock:
            if self._ready:
                self._call("nvmlShutdown")
                self._ready = False


# -- scripted (tests, demos) ---------------------------------------------------------------------------------

@dataclass
class ScriptedSource(GpuSource):
    """A GPU source that returns what it is told. Change `devices`/`processes` (or set `fail` to make the
    next samples raise, like a driver going away) from a test while the app runs."""
    devices: list[GpuInfo] = field(default_factory=list)
    processes: dict[int, list[ProcInfo]] = field(default_factory=dict)
    error: str | None = None
    fail: Exception | None = None
    calls: int = 0

    @classmethod
    def no_gpu(cls) -> "ScriptedSource":
        return cls(error=f"{NO_GPU} (scripted)")

    def sample_devices(self) -> list[GpuInfo]:
        self.calls += 1
        if self.fail:
            raise self.fail
        return list(self.devices)

    def sample_processes(self) -> dict[int, list[ProcInfo]]:
        if self.fail:
            raise self.fail
        return dict(self.processes)


# -- marking the engine's own processes -------------------------------------------------------------------

def engine_owner(pid: int, engines: dict[int, str], parents: Callable[[int], Iterable[int]] | None = None) -> str | None:
    """The run id owning a GPU process: the engine itself, or a child of it (torchrun workers)."""
    if pid in engines:
        return engines[pid]
    for ppid in (parents or _parents)(pid):
        if ppid in engines:
            return engines[ppid]
    return None


def _parents(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).parents()]
    except psutil.Error:
        return []


def _proc_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None   # another PID namespace (containers) or already gone


def _attr(obj, name):
    v = getattr(obj, name, None)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _text(v) -> str | None:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return v if isinstance(v, str) else None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
