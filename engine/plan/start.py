"""What the engine's probe asks the estimate before step 1 (engine/train/probe.py).

micro_batch = "auto": the probe starts its search from the largest rows-per-pass the estimate puts under
90% of the card, and holds the optimizer state's memory while it probes. Both come from here, so the probe
reads the same config (engine.estimate.config_source.resolve: local folder, HF cache, then the bundled
table: a hub model gets a start size too) and the same optimizer-state table as `tunetop estimate`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..estimate import optimizer as opt
from ..estimate.config_source import resolve
from ..profile import Profile
from .profile_estimate import run_estimate, settings_of

START_FRACTION = 0.9  # the probe itself finds the real limit; the estimate only saves it a few tries


@dataclass(frozen=True)
class StartSize:
    rows: int | None       # the largest candidate rows-per-pass under START_FRACTION of the card, or None
    reason: str            # why there is none (or where the config came from)


def start_size(profile: Profile, device_bytes: int, candidates: list[int], *,
               capability: tuple[int, int] | None = None, gradient_checkpointing: bool | None = None,
               padding_free: bool | None = None) -> StartSize:
    """The largest of `candidates` (rows per pass) whose estimate stays under 90% of device_bytes.

    gradient_checkpointing / padding_free: what the trainer runs with now (the fit cache may have turned
    checkpointing on); None takes the profile's. Never raises: an unknown model gives rows=None and why.
    """
    model = resolve(profile.model.name_or_path, profile.model.revision)
    if model.config is None:
        return StartSize(None, model.problem)
    s = settings_of(profile)
    if gradient_checkpointing is not None:
        s = replace(s, gradient_checkpointing=gradient_checkpointing)
    if padding_free is not None:
        s = replace(s, packing=padding_free)
    try:
        for rows in sorted(set(candidates), reverse=True):
            if run_estimate(model.config, replace(s, micro_batch=rows), capability).total <= START_FRACTION * device_bytes:
                return StartSize(rows, model.origin)
    except ValueError as exc:
        return StartSize(None, getattr(exc, "message", None) or str(exc))
    return StartSize(None, f"even {min(candidates)} row(s) a pass is estimated above "
                           f"{START_FRACTION:.0%} of the card")


def optimizer_state_bytes(optimizer: str, tensors) -> int:
    """Resident optimizer state for trainable tensors, given as (shape, bytes per element) pairs: the
    estimator's table (engine/estimate/optimizer.py). Paged optimizers give 0: their state lives in CUDA
    unified memory, outside PyTorch's allocator, and moves to host memory instead of failing."""
    if opt.is_paged(optimizer):
        return 0
    if optimizer not in opt.STATE_BYTES:
        optimizer = "adamw_torch"  # an optimizer the table does not know: assume AdamW's two states
    rows = []
    for shape, element in tensors:
        shape = tuple(shape) or (1,)
        cols = shape[-1] if len(shape) > 1 else 1
        n = 1
        for d in shape:
            n *= d
        rows.append((n // cols, cols, element))
    return opt.state_bytes(optimizer, rows)
