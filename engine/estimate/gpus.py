"""Common GPUs and the memory CUDA reports for them: the one GPU card type of tunetop's estimate.

Why not the marketing number: "24 GB" cards report 24 GiB (24,576 MiB) and "80 GB" H100s about 79.6 GiB;
the verdict compares against what the driver reports. Values are nvidia-smi's "Total" in MiB as commonly
reported; the live telemetry (NVML, engine.plan.detect) gives the exact figure of the card at hand.

compute_capability decides precision = "auto" the way the engine does (engine/plan/precision.py): below
8.0 (Volta, Turing: V100, T4, RTX 20xx) there is no bf16, so the engine trains in fp16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MiB = 1024**2


@dataclass(frozen=True)
class GpuCard:
    name: str
    total_bytes: int
    detected: bool = False  # True: read from this machine; False: a card from the common list
    compute_capability: tuple[int, int] | None = None  # None: unknown (treated as bf16-capable)


COMMON_GPUS: list[GpuCard] = [
    GpuCard("RTX 4060 Ti 16 GB", 16380 * MiB, compute_capability=(8, 9)),
    GpuCard("RTX 3090 24 GB", 24576 * MiB, compute_capability=(8, 6)),
    GpuCard("RTX 4090 24 GB", 24564 * MiB, compute_capability=(8, 9)),
    GpuCard("RTX 5090 32 GB", 32607 * MiB, compute_capability=(12, 0)),
    GpuCard("A100 40 GB", 40960 * MiB, compute_capability=(8, 0)),
    GpuCard("L40S 48 GB", 46068 * MiB, compute_capability=(8, 9)),
    GpuCard("RTX A6000 48 GB", 49140 * MiB, compute_capability=(8, 6)),
    GpuCard("A100 80 GB", 81920 * MiB, compute_capability=(8, 0)),
    GpuCard("H100 80 GB", 81559 * MiB, compute_capability=(9, 0)),
    GpuCard("H200 141 GB", 143771 * MiB, compute_capability=(9, 0)),
    GpuCard("Tesla T4 16 GB", 15360 * MiB, compute_capability=(7, 5)),
    GpuCard("RTX 2080 Ti 11 GB", 11264 * MiB, compute_capability=(7, 5)),
]
GPU = GpuCard  # the name older callers used

# Detected cards whose NVML name says they predate bf16 (when NVML does not give the capability).
_PRE_AMPERE = re.compile(r"\b(T4|V100|P100|P40|RTX 20\d\d|TITAN RTX|TITAN V|Quadro RTX|GTX 16\d\d)\b",
                         re.IGNORECASE)


def capability_from_name(name: str) -> tuple[int, int] | None:
    """(7, 5)-style guess for a card name without a reported capability; None when nothing says pre-Ampere."""
    return (7, 5) if _PRE_AMPERE.search(name or "") else None


def find_gpu(name: str) -> GpuCard | None:
    """A COMMON_GPUS entry whose name contains every word of ``name`` (case-insensitive): "4090", "a100 80"."""
    words = name.lower().replace("gb", " ").split()
    for gpu in COMMON_GPUS:
        label = gpu.name.lower()
        if words and all(w in label.split() or w in label for w in words):
            return gpu
    return None
