"""Messages the telemetry and run workers post to the UI thread (post_message is thread-safe)."""
from __future__ import annotations

from textual.message import Message

from engine.telemetry import GpuInfo, HostInfo, ProcInfo


class GpuSample(Message):
    def __init__(self, devices: list[GpuInfo], procs: dict[int, list[ProcInfo]], error: str | None,
                 warning: str | None):
        super().__init__()
        self.devices, self.procs, self.error, self.warning = devices, procs, error, warning


class HostSample(Message):
    def __init__(self, info: HostInfo):
        super().__init__()
        self.info = info


class RunsChanged(Message):
    """Every run's latest view (immutable RunView snapshots, by run id), the runs whose view changed (ids), and
    whether runs appeared, vanished or could not be listed (structure). `painted`, if given, is set once the
    UI has drawn the change (the loader waits for it, see workers)."""

    def __init__(self, views: dict, ids: set[str], structure: bool = False, painted=None, error: str | None = None):
        super().__init__()
        self.views, self.ids, self.structure, self.painted, self.error = views, ids, structure, painted, error
