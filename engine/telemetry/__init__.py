"""Hardware telemetry for the dashboard: GPUs through NVML (or a scripted source in tests) and the host
through psutil. Light on purpose: no textual, no torch; every query that fails becomes None ("n/a")."""
from .gpu import GpuInfo, GpuSource, NvmlSource, ProcInfo, ScriptedSource, engine_owner, visible_devices
from .host import HostInfo, sample_host

__all__ = ["GpuInfo", "GpuSource", "NvmlSource", "ProcInfo", "ScriptedSource", "engine_owner",
           "visible_devices", "HostInfo", "sample_host"]
