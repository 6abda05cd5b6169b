"""A profile's settings, as arguments of the estimator (engine/estimate/vram.estimate).

The one place that knows how profile fields map onto the memory formulas (switches.py lists them with their
terms), so the CLI, the run builder, the probe, the suggestions and "what can I train here" cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..estimate import vram
from ..profile import Profile
from .precision import estimator_dtypes, resolve_precision


@dataclass(frozen=True)
class Settings:
    """The estimator's inputs; `replace(settings, micro_batch=2)` gives a what-if."""
    method: str
    micro_batch: int
    grad_accum: int
    seq_len: int
    gradient_checkpointing: bool
    optimizer: str
    precision: str                # training.precision as written ("auto" resolved per GPU)
    lora_r: int
    target_modules: str | tuple
    lora_dropout: float
    double_quant: bool
    packing: bool
    auto_batch: bool = False      # micro_batch = "auto" in the profile: estimated at 1, the engine probes
    use_dora: bool = False
    compute_dtype: str = "auto"   # QLoRA's 4-bit compute dtype ("auto": the training precision)

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum

    def describe(self) -> str:
        batch = (f"micro-batch auto (estimated at {self.micro_batch})" if self.auto_batch
                 else f"micro-batch {self.micro_batch} × accumulation {self.grad_accum} = {self.effective_batch}")
        targets = self.target_modules if isinstance(self.target_modules, str) else ",".join(self.target_modules)
        lora = "" if self.method == "full" else f", {'DoRA' if self.use_dora else 'r'}={self.lora_r} on {targets}"
        return (f"{self.method}{lora} · {batch} · seq {self.seq_len} · checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'} · {self.optimizer} · {self.precision}")


def settings_of(profile: Profile) -> Settings:
    t, m = profile.training, profile.method
    auto = not isinstance(t.micro_batch, int)
    targets = m.target_modules if isinstance(m.target_modules, str) else tuple(m.target_modules)
    return Settings(method=m.type, micro_batch=1 if auto else t.micro_batch, grad_accum=t.grad_accum,
                    seq_len=t.max_seq_len, gradient_checkpointing=t.gradient_checkpointing,
                    optimizer=t.optimizer, precision=t.precision, lora_r=m.lora_r,
                    target_modules=targets, lora_dropout=m.lora_dropout, double_quant=m.double_quant,
                    packing=t.packing, auto_batch=auto, use_dora=m.use_dora, compute_dtype=m.compute_dtype)


def training_precision(s: Settings, capability: tuple[int, int] | None) -> str:
    """What the engine will train in on a GPU of this compute capability (None: unknown, bf16-capable)."""
    return resolve_precision(s.precision, capability, cuda=True)


def estimate_kwargs(s: Settings, capability: tuple[int, int] | None = None) -> dict:
    """engine.estimate.estimate()'s keyword arguments (also what advice.suggest and largest_fitting take),
    for a GPU of this compute capability."""
    precision = training_precision(s, capability)
    dtypes = estimator_dtypes(s.method, precision)
    kwargs = dict(method=s.method, micro_batch=s.micro_batch, seq_len=s.seq_len, lora_r=s.lora_r,
                  target_modules=list(s.target_modules) if isinstance(s.target_modules, tuple) else s.target_modules,
                  gradient_checkpointing=s.gradient_checkpointing, optimizer=s.optimizer,
                  double_quant=s.double_quant, lora_dropout=s.lora_dropout if s.method != "full" else 0.0,
                  padding_free=s.packing, use_dora=s.use_dora and s.method != "full", **dtypes)
    if s.method == "qlora" and s.compute_dtype == "fp32":
        # The engine loads a QLoRA model in its compute dtype: embeddings, norms and lm_head in fp32, which
        # makes the residual stream and the 4-bit layers' outputs fp32, as prepare_model_for_kbit_training would.
        kwargs["upcast_frozen_fp32"] = True
    return kwargs


def run_estimate(config: dict, s: Settings, capability: tuple[int, int] | None = None) -> vram.Estimate:
    """Raises ValueError (UnsupportedArchitecture included) with a message for the user."""
    return vram.estimate(config, **estimate_kwargs(s, capability))


__all__ = ["Settings", "settings_of", "estimate_kwargs", "run_estimate", "training_precision"]
