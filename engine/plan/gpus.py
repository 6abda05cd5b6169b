"""The GPUs an estimate is compared with: the detected ones (NVML, through engine.telemetry), or common
cards picked by name when none is detected or when planning for another machine."""
from __future__ import annotations

from dataclasses import dataclass

from ..estimate.gpus import COMMON_GPUS, find_gpu


@dataclass(frozen=True)
class GpuCard:
    name: str
    total_bytes: int
    detected: bool = False   # True: read from this machine; False: a card from the common list


def common_cards() -> list[GpuCard]:
    return [GpuCard(g.name, g.total_bytes) for g in COMMON_GPUS]


def pick_card(name: str) -> GpuCard | None:
    """A common card by a loose name ("4090", "a100 80", "H100")."""
    g = find_gpu(name)
    return GpuCard(g.name, g.total_bytes) if g else None


def detect(source=None) -> tuple[list[GpuCard], str | None]:
    """(detected GPUs, why none were found). Never raises: no driver, no pynvml, a failing query all
    become an empty list with a reason. NVML is slow (about a second): call it off the UI thread."""
    own = source is None
    try:
        if own:
            from ..telemetry.gpu import NvmlSource
            source = NvmlSource()
        devices = source.sample_devices()
        error = getattr(source, "error", None)
    except Exception as exc:   # telemetry is optional for an estimate
        return [], f"cannot read GPUs ({exc})"
    finally:
        if own and source is not None:
            try:
                source.close()
            except Exception:
                pass
    cards = [GpuCard(d.name or f"GPU {d.index}", int(d.mem_total), detected=True)
             for d in devices if getattr(d, "mem_total", None) and not getattr(d, "error", None)]
    return cards, (None if cards else (error or "no NVIDIA GPU detected"))
