"""tunetop's SFTTrainer: trl's trainer plus a test hook for simulated out-of-memory errors.

The OOM backoff (split the micro-batch inside the step) builds on this class.
"""
from __future__ import annotations

import os

import torch
from trl import SFTTrainer

FAULT_ENV = "TUNETOP_FAULT_OOM_TOKENS"


def fault_limit() -> int | None:
    """Test hook: TUNETOP_FAULT_OOM_TOKENS=N makes every forward pass over more than N tokens (rows x padded
    length) raise torch.OutOfMemoryError, as a GPU that is too small would. Unset: does nothing."""
    value = os.environ.get(FAULT_ENV, "").strip()
    return int(value) if value.isdigit() else None


class TunetopTrainer(SFTTrainer):
    def compute_loss(self, model, inputs, *args, **kwargs):
        limit = fault_limit()
        if limit is not None and model.training:
            ids = inputs["input_ids"]
            if ids.numel() > limit:
                raise torch.OutOfMemoryError(
                    f"simulated by {FAULT_ENV}={limit}: chunk of {ids.shape[0]} x {ids.shape[1]} = {ids.numel()} tokens")
        return super().compute_loss(model, inputs, *args, **kwargs)
