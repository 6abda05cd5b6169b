"""training.precision resolved the way the engine resolves it, in one light function.

engine/train/model.py (pick_placement) calls `resolve_precision` with the real device's compute capability;
the estimate calls it with each GPU card's, so "auto" is estimated as what will run on that card.

Why compute capability and not torch.cuda.is_bf16_supported(): since torch 2.3 that returns True on Turing
(T4, RTX 20xx; capability 7.5) because bf16 can be emulated there, slowly and without bf16 tensor cores.
Native bf16 starts at Ampere (8.0), so "auto" picks fp16 below it.
"""
from __future__ import annotations

from ..errors import TunetopError

BF16_MIN_CAPABILITY = (8, 0)


class PrecisionUnavailable(TunetopError):
    """The precision asked for cannot run on this device."""


def resolve_precision(requested: str, capability: tuple[int, int] | None, *, cuda: bool | None = None) -> str:
    """"bf16", "fp16" or "fp32" for training.precision on a device.

    capability: the GPU's (major, minor) compute capability; None with cuda=False (the default when
    capability is None) means the CPU. A GPU of unknown capability (cuda=True, capability None) is taken
    as bf16-capable. Raises PrecisionUnavailable for fp16 on the CPU.
    """
    on_gpu = capability is not None if cuda is None else cuda
    if not on_gpu:
        if requested == "fp16":
            raise PrecisionUnavailable('training.precision = "fp16" needs a GPU; this machine has none',
                                       'use precision = "auto" (fp32 on CPU) or "bf16"')
        return "fp32" if requested == "auto" else requested
    if requested != "auto":
        return requested
    return "bf16" if capability is None or tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"


def estimator_dtypes(method: str, precision: str) -> dict:
    """estimate()'s precision (the load dtype of the weights) and autocast for a resolved training precision.

    bf16/fp16: mixed precision (the Trainer's autocast), weights loaded in that dtype, except full
    fine-tuning under fp16: GradScaler refuses fp16 parameters, so the engine loads fp32 master weights
    (engine/train/model.py), about twice the bf16 memory for weights, gradients and AdamW state.
    fp32: no autocast, fp32 weights.
    """
    if precision == "fp32":
        return {"precision": "fp32", "autocast": False}
    if method == "full" and precision == "fp16":
        return {"precision": "fp32", "autocast": True}
    return {"precision": precision, "autocast": True}
