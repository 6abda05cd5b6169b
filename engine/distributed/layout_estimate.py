"""The peak per GPU of a profile's layout, for the run builder: which GPUs, which strategy (`strategy = "auto"`
decided as the launch decides it, engine/distributed/launching.plan), the peak per GPU
(engine/distributed/estimate.py over the single-GPU estimate engine.plan made) and a verdict per chosen GPU.

Planning for another machine (no GPU detected, a common card picked): the layout is taken to have as many
of that card as it names (the highest index in `gpus`, or `processes`; 2 for gpus = "all").

Torch-free, and pure arithmetic on the estimate's terms: cheap enough for every keystroke.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..estimate import vram
from ..estimate.gpus import GpuCard
from .estimate import Placement, per_gpu
from .launching import wants_distribution
from ..profile.distributed_rules import parse_gpus
from .layout import Layout, LayoutError, resolve

PLANNED_ALL = 2   # gpus = "all" with a planning card: how many of it


@dataclass(frozen=True)
class LayoutEstimate:
    layout: Layout | None
    placement: Placement | None = None
    cards: tuple[GpuCard, ...] = ()       # the GPU of each rank (model_parallel: each share of the layers)
    figures: tuple[int, ...] = ()         # the estimate on each of those GPUs
    verdicts: tuple[str, ...] = ()        # "fits" | "tight" | "does not fit", one per card
    problem: str = ""                     # why there is no layout (names the field)
    hint: str = ""
    planned: bool = False                 # for a picked card, not this machine's GPUs

    @property
    def verdict(self) -> str | None:
        """The layout's verdict: its worst GPU's."""
        order = ("does not fit", "tight", "fits")
        return next((v for v in order if v in self.verdicts), None)


def planned_count(profile) -> int:
    gpus, _ = parse_gpus(profile.distributed.gpus)
    if isinstance(gpus, list) and gpus:
        return max(gpus) + 1
    processes = profile.distributed.processes
    if gpus == "all":
        return processes if isinstance(processes, int) else PLANNED_ALL
    return processes if isinstance(processes, int) else 1


def layout_estimate(profile, est: vram.Estimate | None, config: dict | None, cards: list[GpuCard], *,
                    detected: bool, precision: str = "bf16", double_quant: bool = True) -> LayoutEstimate | None:
    """None when the profile asks for nothing distributed (one process on the default device: the usual
    per-card figures say it all). est/config: the single-GPU estimate and the model's config.json."""
    if not wants_distribution(profile):
        return None
    pool = list(cards) if detected else cards[:1] * planned_count(profile)
    smallest = min((c.total_bytes for c in pool), default=0)
    fits_one = fits_sharded = None
    if est is not None and config is not None and smallest:
        fits_one = lambda: vram.verdict(est.total, smallest) != "does not fit"   # noqa: E731
        fits_sharded = lambda world: vram.verdict(  # noqa: E731
            per_gpu(est, config, "fsdp", world, precision=precision, double_quant=double_quant).peak,
            smallest) != "does not fit"
    try:
        layout = resolve(profile, len(pool), fits_one_gpu=fits_one, fits_sharded=fits_sharded, check_port=False)
    except LayoutError as exc:
        return LayoutEstimate(None, problem=exc.message, hint=exc.hint or "", planned=not detected)
    if layout.device != "cuda" or est is None or config is None:
        return LayoutEstimate(layout, planned=not detected)
    chosen = tuple(pool[i] for i in layout.gpus) if layout.gpus else tuple(pool[:1])
    world = len(chosen) if layout.strategy == "model_parallel" else layout.world_size
    try:
        placed = per_gpu(est, config, layout.strategy, world, precision=precision, double_quant=double_quant)
    except (ValueError, KeyError) as exc:
        return LayoutEstimate(layout, problem=f"no per-GPU estimate for {layout.strategy}: {exc}",
                              planned=not detected)
    figures = tuple(placed.per_gpu[i] if len(placed.per_gpu) == len(chosen) else placed.peak
                    for i in range(len(chosen)))
    verdicts = tuple(vram.verdict(b, c.total_bytes) for b, c in zip(figures, chosen))
    return LayoutEstimate(layout, placed, chosen, figures, verdicts, planned=not detected)
