"""Load the tokenizer and the model for a method: QLoRA (4-bit NF4 base + LoRA), LoRA (16-bit base + LoRA)
or full fine-tuning, on the best device and precision available."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from .errors import SetupError


@dataclass
class Placement:
    device: str          # "cuda" or "cpu"
    precision: str       # "bf16", "fp16" or "fp32"
    devices: list[str]   # human-readable device names

    @property
    def dtype(self) -> torch.dtype:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]


def pick_placement(requested: str) -> Placement:
    # One resolution for the engine and the estimate (engine/plan/precision.py): "auto" is bf16 from compute
    # capability 8.0, fp16 below it (torch.cuda.is_bf16_supported() says True on Turing: emulated bf16).
    from ..plan.precision import PrecisionUnavailable, resolve_precision
    cuda = torch.cuda.is_available()
    capability = torch.cuda.get_device_capability() if cuda else None
    try:
        precision = resolve_precision(requested, capability, cuda=cuda)
    except PrecisionUnavailable as exc:
        raise SetupError(exc.message, exc.hint) from None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"]
    return Placement("cuda" if cuda else "cpu", precision, names)


def load_tokenizer(model_ref: str, revision: str, trust_remote_code: bool):
    tok = AutoTokenizer.from_pretrained(model_ref, revision=revision, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        # Padding positions are masked out of the loss, so reusing EOS as padding is safe.
        tok.pad_token = tok.eos_token
    return tok


def load_model(profile, placement: Placement):
    m, method = profile.model, profile.method
    kwargs = dict(revision=m.revision, trust_remote_code=m.trust_remote_code)
    if method.type == "qlora":
        compute = placement.dtype if method.compute_dtype == "auto" else \
            {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[method.compute_dtype]
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=method.quant_type,
            bnb_4bit_use_double_quant=method.double_quant, bnb_4bit_compute_dtype=compute)
        kwargs["dtype"] = compute
        kwargs["device_map"] = {"": 0} if placement.device == "cuda" else {"": "cpu"}
    elif method.type == "lora":
        kwargs["dtype"] = placement.dtype
    else:
        # fp16 mixed precision needs fp32 master weights (GradScaler refuses fp16 parameters).
        kwargs["dtype"] = torch.float32 if placement.precision == "fp16" else placement.dtype
    from .distributed_setup import apply_model_kwargs
    apply_model_kwargs(kwargs, method.type, placement)   # DDP/FSDP ranks' devices, model_parallel's map
    model = AutoModelForCausalLM.from_pretrained(m.name_or_path, **kwargs)
    if method.type == "full":
        return model
    return _add_lora(model, profile)


def _add_lora(model, profile):
    from peft import LoraConfig, get_peft_model

    method, training = profile.method, profile.training
    # QLoRA and LoRA are prepared alike. peft's prepare_model_for_kbit_training is deliberately not used:
    # it upcasts embeddings, lm_head and norms to fp32, which makes the whole residual stream fp32 and
    # cost 9 GiB more at Llama-3.1-8B, micro-batch 4 x 2048 with checkpointing (24.9 vs 15.6 GiB, measured
    # for engine/estimate). The base weights are frozen either way; autocast keeps the maths stable.
    for param in model.parameters():
        param.requires_grad_(False)
    if training.gradient_checkpointing:
        # Checkpointed blocks need an input that requires grad, or the adapters inside get none.
        model.enable_input_require_grads()
    config = LoraConfig(r=method.lora_r, lora_alpha=method.lora_alpha, lora_dropout=method.lora_dropout,
                        target_modules=method.target_modules, use_dora=method.use_dora,
                        use_rslora=method.use_rslora, bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise SetupError(f"method.target_modules: {str(exc).splitlines()[0]}",
                         'use "all-linear", or names of Linear layers in this model such as q_proj, v_proj') from None


def trainable_summary(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
