"""GPU and host telemetry: the NVML source against a fake pynvml, CUDA_VISIBLE_DEVICES, engine marking."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from engine.telemetry import NvmlSource, ProcInfo, ScriptedSource, engine_owner, sample_host, visible_devices
from engine.telemetry.gpu import NO_GPU

UUIDS = ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-cccc-3333"]


@pytest.mark.parametrize("env,expect", [
    (None, [0, 1, 2]),
    ("2,0", [2, 0]),
    ("1", [1]),
    ("", []),
    ("-1", []),
    ("0,7,1", [0]),                         # CUDA stops at the first entry naming no device
    ("1,1,2", [1]),                         # and at a repeat
    ("GPU-cccc-3333,GPU-aaaa", [2, 0]),     # UUIDs, unique prefixes allowed
    ("bbbb", [1]),                          # "GPU-" may be left out
    ("GPU-", []),                           # ambiguous prefix
    (" 2 , 1 ", [2, 1]),
])
def test_cuda_visible_devices_order(env, expect):
    assert visible_devices(env, 3, UUIDS) == expect


class FakeNvml:
    """Three GPUs; set `broken` to names of functions that raise, `lost` to NVML indices that vanished."""
    NVML_TEMPERATURE_GPU = 0

    def __init__(self):
        self.broken: set[str] = set()
        self.lost: set[int] = set()
        self.init_error: Exception | None = None
        self.shutdowns = 0

    def __getattr__(self, name):
        raise AttributeError(name)        # a function this driver's binding does not have

    def _check(self, name):
        if name in self.broken:
            raise RuntimeError(f"NVML error in {name}")

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return 3

    def nvmlDeviceGetHandleByIndex(self, i):
        if i in self.lost:
            raise RuntimeError("GPU is lost")
        return i

    def nvmlDeviceGetUUID(self, h):
        return UUIDS[h]

    def nvmlDeviceGetName(self, h):
        self._check("name")
        return f"GPU model {h}".encode()

    def nvmlDeviceGetMemoryInfo(self, h):
        self._check("mem")
        return SimpleNamespace(used=(h + 1) << 30, total=80 << 30, free=0)

    def nvmlDeviceGetUtilizationRates(self, h):
        self._check("util")
        return SimpleNamespace(gpu=10 * h, memory=0)

    def nvmlDeviceGetTemperature(self, h, kind):
        self._check("temp")
        return 50 + h

    def nvmlDeviceGetPowerUsage(self, h):
        self._check("power")
        return 100_000 + h * 1000

    # nvmlDeviceGetEnforcedPowerLimit is missing on purpose: an old binding

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=5 << 30), SimpleNamespace(pid=1, usedGpuMemory=None)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=5 << 30),      # listed in both: counted once
                SimpleNamespace(pid=2, usedGpuMemory=(1 << 64) - 1)]            # NVML's "not available"


def test_nvml_source_reads_every_figure_and_missing_ones_are_none():
    src = NvmlSource(nvml=FakeNvml(), env={"CUDA_VISIBLE_DEVICES": "2,0"})
    devs = src.sample_devices()
    assert [(d.index, d.nvml_index, d.name) for d in devs] == [(0, 2, "GPU model 2"), (1, 0, "GPU model 0")]
    assert devs[0].mem_used == 3 << 30 and devs[0].util == 20 and devs[0].temp == 52 and devs[0].power == 102.0
    assert devs[0].power_limit is None                    # missing function -> n/a
    assert src.error is None
    procs = src.sample_processes()
    assert set(procs) == {0, 1}
    pids = [p.pid for p in procs[0]]
    assert pids.count(os.getpid()) == 1 and 1 in pids and 2 in pids
    assert {p.pid: p.mem_used for p in procs[0]}[2] is None
    mine = next(p for p in procs[0] if p.pid == os.getpid())
    assert mine.name                                      # named through psutil


def test_nvml_failures_become_none_and_a_lost_gpu_says_so():
    fake = FakeNvml()
    src = NvmlSource(nvml=fake, env={})
    fake.broken = {"temp", "power"}
    d = src.sample_devices()[0]
    assert d.temp is None and d.power is None and d.mem_used is not None and d.error is None
    fake.lost = {1}
    devs = src.sample_devices()
    assert devs[1].error and "lost" in devs[1].error and devs[0].error is None
    fake.broken = {"name", "mem", "util"}
    assert all(d.error for d in src.sample_devices())     # every query fails: not responding
    src.close()
    assert fake.shutdowns == 1


def test_no_driver_means_no_gpu_detected():
    fake = FakeNvml()
    fake.init_error = RuntimeError("NVML Shared Library Not Found")
    src = NvmlSource(nvml=fake)
    assert src.sample_devices() == [] and src.sample_processes() == {}
    assert src.error.startswith(NO_GPU) and "Not Found" in src.error


def test_real_pynvml_on_this_machine_does_not_raise():
    src = NvmlSource()
    devices = src.sample_devices()
    assert isinstance(devices, list)
    if not devices:
        assert src.error and src.error.startswith(NO_GPU)
    src.close()


def test_cuda_visible_devices_hiding_everything():
    src = NvmlSource(nvml=FakeNvml(), env={"CUDA_VISIBLE_DEVICES": ""})
    assert src.sample_devices() == [] and "hides every GPU" in src.error


def test_engine_owner_matches_the_engine_and_its_children():
    engines = {100: "run-a"}
    parents = {200: [100, 1], 300: [5, 1]}
    assert engine_owner(100, engines, parents.get) == "run-a"
    assert engine_owner(200, engines, parents.get) == "run-a"      # a torchrun worker
    assert engine_owner(300, engines, parents.get) is None
    assert engine_owner(os.getpid(), {os.getppid(): "me"}) == "me"  # real parents through psutil


def test_scripted_source():
    src = ScriptedSource(processes={0: [ProcInfo(1)]})
    assert src.sample_devices() == [] and src.sample_processes() == {0: [ProcInfo(1)]}
    src.fail = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        src.sample_devices()
    assert ScriptedSource.no_gpu().error.startswith(NO_GPU)


def test_host_sample(tmp_path):
    h = sample_host(tmp_path / "runs" / "not-yet")          # measures the disk it will be created on
    assert h.ram_total and h.ram_total > 0 and h.cpu_count
    assert h.disk_free is not None and h.disk_path == str(tmp_path)
    assert sample_host(None).disk_free is None
