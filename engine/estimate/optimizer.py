"""Optimizer state: bytes per trainable parameter, for every optimizer the profile offers.

The one table of it: the estimate and the engine's probe (engine/train/probe.py holds this much memory
before step 1, through engine.plan.optimizer_state_bytes) read the same numbers.

torch's AdamW keeps exp_avg and exp_avg_sq in the parameter's dtype (2p); bitsandbytes' 8-bit optimizers
keep 1 byte per state plus one fp32 absmax per 2048-value block (negligible). "paged_" variants allocate
their state in CUDA unified memory: when the GPU is full the driver moves it to host memory and back for
optimizer.step, so it is not resident at the peak of the forward/backward (the QLoRA paper's LLaMA-65B,
paged 32-bit AdamW, trained on one 48 GB GPU). The estimate shows both: resident and worst case.
"""
from __future__ import annotations

from typing import Callable

# optimizer -> bytes of state per parameter, given the parameter's own bytes p (None: factored, see below).
STATE_BYTES: dict[str, Callable[[int], int] | None] = {
    "adamw_torch": lambda p: 2 * p,
    "adamw_torch_fused": lambda p: 2 * p,
    "adamw_hf": lambda p: 2 * p,
    "adamw": lambda p: 2 * p,
    "adam": lambda p: 2 * p,
    "paged_adamw_32bit": lambda p: 8,
    "adamw_bnb_8bit": lambda p: 2,
    "adamw_8bit": lambda p: 2,
    "paged_adamw_8bit": lambda p: 2,
    "lion_8bit": lambda p: 1,
    "paged_lion_8bit": lambda p: 1,
    "lion_32bit": lambda p: 4,
    "paged_lion_32bit": lambda p: 4,
    "sgd": lambda p: 0,  # the HF Trainer's "sgd" has no momentum
    "adagrad": lambda p: p,
    # adafactor keeps factored second moments (rows + columns per matrix, fp32), no first moment.
    "adafactor": None,
}
OPTIMIZERS = tuple(STATE_BYTES)


def is_paged(optimizer: str) -> bool:
    return optimizer.startswith("paged_")


def check(optimizer: str) -> None:
    if optimizer not in STATE_BYTES:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def state_bytes(optimizer: str, tensors: list[tuple[int, int, int]]) -> int:
    """Bytes of optimizer state for trainable tensors given as (rows, cols, bytes per element)."""
    check(optimizer)
    rule = STATE_BYTES[optimizer]
    if rule is None:
        # Adafactor: fp32 row and column statistics per matrix, a full fp32 state per vector.
        return sum(4 * (rows + cols) if min(rows, cols) > 1 else 4 * rows * cols for rows, cols, _ in tensors)
    return sum(rows * cols * rule(p) for rows, cols, p in tensors)
