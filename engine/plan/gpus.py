"""The GPUs an estimate is compared with: the detected ones (NVML, through engine.telemetry), or common
cards picked by name when none is detected or when planning for another machine. One card type for both:
engine.estimate.gpus.GpuCard."""
from __future__ import annotations

from ..estimate.gpus import COMMON_GPUS, GpuCard, capability_from_name, find_gpu


def common_cards() -> list[GpuCard]:
    return list(COMMON_GPUS)


def pick_card(name: str) -> GpuCard | None:
    """A common card by a loose name ("4090", "a100 80", "H100", "T4")."""
    return find_gpu(name)


def detect(source=None) -> tuple[list[GpuCard], str | None]:
    """(detected GPUs, why none were found). Never raises: no driver, no pynvml, a failing query all
    become an empty list with a reason. NVML is slow (about a second): call it off the UI thread.
    The compute capability comes from the sample when telemetry reports one, else from the card's name."""
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
    cards = []
    for d in devices:
        if not getattr(d, "mem_total", None) or getattr(d, "error", None):
            continue
        name = d.name or f"GPU {d.index}"
        capability = getattr(d, "compute_capability", None) or capability_from_name(name)
        cards.append(GpuCard(name, int(d.mem_total), detected=True,
                             compute_capability=tuple(capability) if capability else None))
    return cards, (None if cards else (error or "no NVIDIA GPU detected"))
