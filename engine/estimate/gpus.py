"""Common GPUs and the memory CUDA reports for them.

Why not the marketing number: "24 GB" cards report 24 GiB (24,576 MiB) and "80 GB" H100s about 79.6 GiB;
the verdict compares against what the driver reports. Values are nvidia-smi's "Total" in MiB as commonly
reported; the live telemetry (NVML) gives the exact figure of the card at hand and should be preferred.
"""

from __future__ import annotations

from typing import NamedTuple

MiB = 1024**2


class GPU(NamedTuple):
    name: str
    total_bytes: int


COMMON_GPUS: list[GPU] = [
    GPU("RTX 4060 Ti 16 GB", 16380 * MiB),
    GPU("RTX 3090 24 GB", 24576 * MiB),
    GPU("RTX 4090 24 GB", 24564 * MiB),
    GPU("RTX 5090 32 GB", 32607 * MiB),
    GPU("A100 40 GB", 40960 * MiB),
    GPU("L40S 48 GB", 46068 * MiB),
    GPU("A100 80 GB", 81920 * MiB),
    GPU("H100 80 GB", 81559 * MiB),
]


def find_gpu(name: str) -> GPU | None:
    """A COMMON_GPUS entry whose name contains every word of ``name`` (case-insensitive): "4090", "a100 80"."""
    words = name.lower().replace("gb", " ").split()
    for gpu in COMMON_GPUS:
        label = gpu.name.lower()
        if words and all(w in label.split() or w in label for w in words):
            return gpu
    return None
