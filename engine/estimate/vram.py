"""Peak GPU memory of one training step, from config.json alone.

The peak of a step is at the start of the backward: the weights, the trainable state (adapters or full
gradients and optimizer state), every activation autograd saved, and the loss's buffers are alive together.
Each term of ``Estimate`` is one of these, in bytes, documented where it is computed. The defaults describe
tunetop's engine: TRL's SFTTrainer on the HF Trainer with bf16 mixed precision. Which profile field moves
which term is engine/plan/switches.py's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import activations as act
from . import optimizer as opt
from .optimizer import OPTIMIZERS
from .params import ParamCounts, Shape, count_params, shape_of  # noqa: F401  (ParamCounts re-exported)
from .targets import adapted, is_moe, lora_matrices, moe_target_note, rank_of, resolve_targets

METHODS = ("qlora", "lora", "full")

_PRECISION_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

# NF4 (bitsandbytes 0.50, blocksize 64): two 4-bit values per byte, one absmax per 64 values. With double
# quantization the absmax is itself quantized to 8 bits, with an fp32 absmax per 256 of them; otherwise it
# is fp32. Measured: 4.1275 bits a parameter with double quantization (docs/facts.md). Per quantized module a
# few constants also live in the quant state: the 16-entry NF4 code (fp32), the 256-entry code of the
# nested quantization (fp32) and its fp32 offset.
_NF4_BLOCK = 64
_NESTED_BLOCK = 256
_NF4_CONSTANTS = 16 * 4
_NESTED_CONSTANTS = 256 * 4 + 4

# CUDA context with lazy module loading: 0.3 to 0.5 GB (docs/facts.md); the upper end, since cuBLAS and the
# attention kernels add workspaces on first use.
CUDA_CONTEXT_BYTES = 512 * 1024**2
# The caching allocator reserves more than it allocates: activations are freed and re-allocated in other
# sizes every step (sequence lengths vary), so their blocks fragment. 10% of them is a rule of thumb.
FRAGMENTATION = 0.10


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one training step, in bytes, with what it was computed for."""

    weights: int
    adapters: int  # LoRA: adapter weights + grads + optimizer state. Full: grads + optimizer state.
    activations: int
    logits: int
    cuda_overhead: int
    # Context, for display and for the suggestions.
    method: str
    micro_batch: int
    seq_len: int
    gradient_checkpointing: bool
    optimizer: str
    lora_r: int
    params: int  # all parameters of the model
    trainable_params: int
    notes: tuple[str, ...] = field(default=())
    optimizer_state: int = 0  # the optimizer's part of `adapters`
    # Paged optimizers: the part of the state the driver can keep in host memory at the peak of the
    # forward/backward (the state is needed only in optimizer.step, when the activations are gone).
    paged_out: int = 0

    @property
    def total(self) -> int:
        """The peak the verdict uses: with a paged optimizer, its state counted only where it must be resident."""
        return sum(n for _, n in self.breakdown())

    @property
    def worst_case(self) -> int:
        """Every byte resident at once (a paged optimizer's state never moved out)."""
        return self.total + self.paged_out

    def breakdown(self) -> list[tuple[str, int]]:
        """(label, bytes) in display order; sums to ``total``."""
        rows = [
            ("weights", self.weights),
            ("adapters + grads" if self.method != "full" else "grads", self.adapters - self.optimizer_state),
            ("optimizer state", self.optimizer_state),
            ("activations", self.activations),
            ("logits", self.logits),
            ("CUDA overhead", self.cuda_overhead),
        ]
        if self.paged_out:
            rows.append(("paged to host at the peak", -self.paged_out))
        return rows


def _precision_bytes(precision: str | int) -> int:
    if isinstance(precision, int):
        if precision not in (2, 4):
            raise ValueError(f"bytes per parameter must be 2 or 4, not {precision}")
        return precision
    try:
        return _PRECISION_BYTES[precision.lower()]
    except KeyError:
        raise ValueError(f"precision must be one of {', '.join(_PRECISION_BYTES)}, not {precision!r}") from None


def nf4_bytes(n: int, double_quant: bool = True) -> int:
    """Bytes of one NF4-quantized weight of n parameters, its quant state included."""
    blocks = math.ceil(n / _NF4_BLOCK)
    if double_quant:
        return n // 2 + n % 2 + blocks + 4 * math.ceil(blocks / _NESTED_BLOCK) + _NF4_CONSTANTS + _NESTED_CONSTANTS
    return n // 2 + n % 2 + 4 * blocks + _NF4_CONSTANTS


def weight_bytes(
    config: dict, method: str, precision: str | int = "bf16", double_quant: bool = True,
    upcast_frozen_fp32: bool = False,
) -> int:
    """Weights of the model as loaded for training.

    QLoRA: every decoder nn.Linear in NF4 (nf4_bytes); embeddings, lm_head, norms, biases, routers and the
    fused expert parameters of transformers 5 MoE layers (not nn.Linear: bitsandbytes leaves them alone)
    stay in the load dtype, or fp32 when peft's prepare_model_for_kbit_training upcasts them
    (upcast_frozen_fp32). LoRA and full: every parameter in the load dtype (2 bytes in bf16).
    """
    p = _precision_bytes(precision)
    counts = count_params(config)
    if method != "qlora":
        return counts.total * p
    s = shape_of(config)
    quantized = sum(spec.count * sum(nf4_bytes(m.d_in * m.d_out, double_quant) for m in spec.modules if m.quantizable)
                    for spec in s.layer_specs)
    return quantized + counts.not_quantized * (4 if upcast_frozen_fp32 else p)


def _full_tensors(config: dict, p: int) -> list[tuple[int, int, int]]:
    """Every parameter of the model as (rows, cols, bytes), for the optimizer state of full fine-tuning."""
    s = shape_of(config)
    counts = count_params(config)
    out: list[tuple[int, int, int]] = []
    for spec in s.layer_specs:
        for m in spec.modules:
            out += [(m.d_out, m.d_in, p)] * (spec.count * m.experts)
    out += [(s.vocab, s.hidden, p)] * (1 if s.tied else 2)
    vectors = counts.total - sum(r * c for r, c, _ in out)
    out.append((vectors, 1, p))  # norms, biases, routers, sinks: vectors or small matrices
    return out


def trainable_state(
    config: dict, method: str, optimizer: str, precision: str | int, targets: frozenset[str], r: int,
    adapter_bytes: int, use_dora: bool = False,
) -> tuple[int, int, int]:
    """(trainable parameters, bytes of their weights-if-separate + grads, bytes of optimizer state).

    LoRA/QLoRA: targets' lora_A and lora_B (targets.lora_matrices: every expert's, for MoE), plus DoRA's
    magnitude vectors, each with weight and grad in the adapter dtype and the optimizer's state (fp32 AdamW:
    4 + 4 + 8 bytes a parameter). Full: the weights are already counted, so grads (same dtype as the
    weights) + optimizer state.
    """
    opt.check(optimizer)
    if method == "full":
        p = _precision_bytes(precision)
        tensors = _full_tensors(config, p)
        n = count_params(config).total
        return n, n * p, opt.state_bytes(optimizer, tensors)
    tensors = []
    for spec in shape_of(config).layer_specs:
        tensors += [(a, b, adapter_bytes) for a, b in lora_matrices(spec, targets, r, use_dora)] * spec.count
    n = sum(a * b for a, b, _ in tensors)
    return n, n * 2 * adapter_bytes, opt.state_bytes(optimizer, tensors)


@dataclass(frozen=True)
class _Setup:
    shape: Shape
    act: act.ActivationSetup


def activation_setup(
    config: dict,
    *,
    method: str,
    seq_len: int,
    lora_r: int = 16,
    target_modules: str | list[str] | tuple[str, ...] = "all-linear",
    precision: str | int = "bf16",
    lora_dropout: float = 0.0,
    adapter_dtype: str | None = None,
    autocast: bool = True,
    padding_free: bool = False,
    attn_implementation: str = "sdpa",
    upcast_frozen_fp32: bool = False,
    use_dora: bool = False,
    dropout_mask_bytes: int = 1,
) -> tuple[Shape, list, act.ActivationSetup]:
    """(shape, the last decoder layer's Linears, activation setup) for estimate()'s options."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if attn_implementation not in ("sdpa", "eager", "flash_attention_2", "flash_attention_3"):
        raise ValueError(f"attn_implementation must be 'sdpa', 'eager' or a flash kernel, not {attn_implementation!r}")
    s: Shape = shape_of(config)
    attn = "flash" if attn_implementation.startswith("flash") else attn_implementation
    if s.model_type in ("gemma2", "gpt_oss") and attn == "sdpa":
        # transformers 5 refuses SDPA for Gemma 2 (attention soft-capping) and gpt-oss (attention sinks):
        # they run eager.
        attn = "eager"
    p = _precision_bytes(precision)
    c = 2 if (autocast or p == 2) else 4  # activations are in the compute dtype
    if method == "full":
        targets: frozenset[str] = frozenset()
        a_bytes = p
    else:
        if lora_r < 1:
            raise ValueError("lora_r must be at least 1")
        targets = resolve_targets(config, target_modules)
        if adapter_dtype is None:
            adapter_dtype = "bf16" if method == "qlora" else "fp32"
        a_bytes = _precision_bytes(adapter_dtype)
    setup = act.ActivationSetup(
        method=method, c=c, targets=targets, r=lora_r, adapter_bytes=a_bytes, autocast=autocast,
        lora_dropout=lora_dropout, attn_implementation=attn, padding_free=padding_free, seq_len=seq_len,
        base_weight_bytes=0 if method == "qlora" else p,
        residual_bytes=4 if (method == "qlora" and upcast_frozen_fp32) else c,
        use_dora=use_dora and method != "full", dropout_mask_bytes=dropout_mask_bytes,
    )
    return s, list(s.layer_specs[-1].modules), setup


def _layer_terms(s: Shape, setup: act.ActivationSetup) -> list[tuple[int, int, int]]:
    """(count, saved bytes per token, per-layer weight casts) for each kind of decoder layer."""
    return [(spec.count, act.layer_bytes_per_token(s, setup, list(spec.modules)),
             act.weight_cast_bytes_per_layer(s, setup, list(spec.modules))) for spec in s.layer_specs]


def layer_activation_bytes(config: dict, *, micro_batch: int, seq_len: int, **kwargs) -> int:
    """Bytes autograd saves in one (the last) decoder layer for one micro-batch, without checkpointing.

    kwargs are estimate()'s. This is the per-layer figure tests compare with saved-tensor hooks.
    """
    s, _, setup = activation_setup(config, seq_len=seq_len, **kwargs)
    _, per_token, casts = _layer_terms(s, setup)[-1]
    return micro_batch * seq_len * per_token + casts


def estimate(
    config: dict,
    *,
    method: str,
    micro_batch: int,
    seq_len: int,
    lora_r: int = 16,
    target_modules: str | list[str] | tuple[str, ...] = "all-linear",
    gradient_checkpointing: bool = False,
    optimizer: str = "adamw_torch",
    precision: str | int = "bf16",
    double_quant: bool = True,
    lora_dropout: float = 0.0,
    adapter_dtype: str | None = None,
    autocast: bool = True,
    loss: str = "fused",
    padding_free: bool = False,
    attn_implementation: str = "sdpa",
    upcast_frozen_fp32: bool = False,
    use_dora: bool = False,
    dropout_mask_bytes: int = 1,
) -> Estimate:
    """Peak memory of one training step on one GPU.

    method: "qlora" (NF4 base + LoRA), "lora" (16-bit base + LoRA) or "full".
    micro_batch x seq_len: the tokens of one forward (padded batches count their padding).
    precision: dtype the base weights are loaded in ("bf16", "fp16", "fp32"), or bytes per parameter. Full
        fine-tuning under fp16 mixed precision loads fp32 master weights: pass "fp32" with autocast
        (engine.plan.precision.estimator_dtypes maps the profile's precision onto these two).
    adapter_dtype: "fp32" or "bf16"; None means what the stack does: peft upcasts LoRA adapters to fp32
        (autocast_adapter_dtype=True), and TRL's SFTTrainer casts them back to bf16 for quantized models.
    autocast: bf16/fp16 mixed precision (HF Trainer bf16=True wraps the forward in torch.autocast).
    loss: "fused" (TRL SFTTrainer's chunked LM head, no full logits) or "full" (model(labels=...)).
    padding_free: batches without an attention mask (padding-free or packed with position ids). With a
        mask, transformers repeats the KV heads before SDPA and every layer saves a c-byte B x T^2 mask.
    attn_implementation: "sdpa", "eager" or "flash_attention_2"/"flash_attention_3" (these unpad the
        batch: no mask, grouped KV heads). Gemma 2 asked for "sdpa" runs eager, as transformers does.
    upcast_frozen_fp32: QLoRA only: peft's prepare_model_for_kbit_training was called (tunetop's engine
        does not call it: engine/train/model.py). It upcasts every non-4-bit parameter (embeddings, lm_head,
        norms) to fp32, which also makes the residual stream, the norms' outputs and the 4-bit layers' outputs fp32.
    use_dora: peft's DoRA: magnitude vectors (trainable) and the saved tensors of the rescaling.
    dropout_mask_bytes: bytes of one lora_dropout mask element: 1 on CUDA (bool), 4 on CPU.
    """
    if micro_batch < 1 or seq_len < 1:
        raise ValueError("micro_batch and seq_len must be at least 1")
    s, mods, setup = activation_setup(
        config, method=method, seq_len=seq_len, lora_r=lora_r, target_modules=target_modules, precision=precision,
        lora_dropout=lora_dropout, adapter_dtype=adapter_dtype, autocast=autocast, padding_free=padding_free,
        attn_implementation=attn_implementation, upcast_frozen_fp32=upcast_frozen_fp32, use_dora=use_dora,
        dropout_mask_bytes=dropout_mask_bytes,
    )
    p = _precision_bytes(precision)
    c, targets, a_bytes, attn = setup.c, setup.targets, setup.adapter_bytes, setup.attn_implementation
    notes: list[str] = []
    tokens = micro_batch * seq_len

    # Weights: see weight_bytes. QLoRA adds one dequantized weight: bitsandbytes dequantizes each NF4 weight
    # to the compute dtype for its matmul (forward and backward), one at a time.
    weights = weight_bytes(config, method, precision, double_quant, upcast_frozen_fp32)
    if method == "qlora":
        weights += c * max(m.d_in * m.d_out for spec in s.layer_specs for m in spec.modules if m.quantizable)

    # Adapters (LoRA) or grads (full), and the optimizer state: see trainable_state. Gradients are counted
    # as alive at the peak: with gradient accumulation they persist between micro-batches.
    trainable, adapters, state = trainable_state(config, method, optimizer, precision, targets, lora_r, a_bytes,
                                                 setup.use_dora)

    # Logits: see activations.logits_bytes. The lm_head is in fp32 only after prepare_model_for_kbit_training.
    lm_head_bytes = 4 if (method == "qlora" and upcast_frozen_fp32) else p
    logits = act.logits_bytes(s, setup, tokens, loss, lm_head_bytes)

    # Activations, summed over the kinds of decoder layer (DeepSeek: dense first layers, then MoE).
    # Without checkpointing: layers x tokens x (per-layer saved bytes), plus the final norm.
    # With checkpointing: layers x tokens x c h (each layer's input), plus, while one layer is recomputed in
    # the backward, its full activations and the gradients of its backward. That happens after the final
    # norm's and the loss's buffers are freed, so the peak is checkpoints + max(head + logits, recompute):
    # the recomputation adds only what it exceeds them by.
    # Under autocast, casts of weights stored wider than the compute dtype are saved too, per layer.
    terms = _layer_terms(s, setup)
    head = tokens * act.head_bytes_per_token(s, setup, loss)
    if gradient_checkpointing:
        transient = act.recompute_transient_bytes_per_token(s, setup)
        recompute = max(tokens * (per + transient) + casts for _, per, casts in terms)
        activations = s.layers * tokens * act.checkpoint_bytes_per_token(s, setup) + head
        activations += max(0, recompute - head - logits)
    else:
        activations = sum(n * (tokens * per + casts) for n, per, casts in terms) + head

    # CUDA overhead: context + allocator fragmentation of the memory that churns every step.
    cuda_overhead = CUDA_CONTEXT_BYTES + int(FRAGMENTATION * (activations + logits))

    # A paged optimizer's state is needed only in optimizer.step, after the activations are freed: at the
    # forward/backward peak the driver can hold up to that much of it in host memory.
    # Below 256 MiB of state the difference is noise next to the overhead term: shown as resident.
    paged_out = min(state, activations + logits) if opt.is_paged(optimizer) and state >= 256 * 1024**2 else 0

    if method != "full" and lora_dropout > 0:
        notes.append("lora_dropout > 0 saves a dropout mask and a copy of each adapted input")
    if setup.use_dora:
        notes.append("DoRA keeps the base and adapter outputs of every adapted layer for its rescaling")
    if s.model_type in ("gemma2", "gpt_oss") and attn == "eager":
        family = "Gemma 2" if s.model_type == "gemma2" else "gpt-oss"
        notes.append(f"{family} runs eager attention (memory grows with seq_len squared); "
                     "flash_attention_2 avoids that")
    if seq_len > int(_max_positions(config)):
        notes.append(f"seq_len {seq_len} exceeds the model's max_position_embeddings {_max_positions(config)}")
    if paged_out:
        worst = weights + adapters + state + activations + logits + cuda_overhead
        notes.append(f"paged optimizer: {paged_out / 1024**3:.1f} GiB of its state can wait in host memory at the "
                     f"peak; worst case with all of it on the GPU: {worst / 1024**3:.1f} GiB")
    if is_moe(config):
        counts = count_params(config)
        if method == "qlora" and counts.experts:
            notes.append(f"the {counts.experts / 1e9:.1f} B expert parameters stay 16-bit under QLoRA "
                         "(transformers 5 fuses them into 3-D parameters, which bitsandbytes does not quantize)")
        if method != "full":
            note = moe_target_note(config, targets)
            if note:
                notes.append(note)
            if lora_dropout > 0 and any(t.startswith("experts.") for t in targets):
                notes.append("peft refuses lora_dropout > 0 on expert adapters: this setup fails at model setup "
                             "(set lora_dropout = 0, or target attention only)")
        notes.append(f"routed activations: each token passes through {s.top_k} of {s.experts} experts; on one GPU "
                     "there is no all-to-all exchange")
    if config.get("model_type") == "gemma3":
        notes.append("Gemma 3 wrapper: the vision tower is loaded (frozen) beside the language model")

    return Estimate(
        weights=weights, adapters=adapters + state, activations=activations, logits=logits, cuda_overhead=cuda_overhead,
        method=method, micro_batch=micro_batch, seq_len=seq_len, gradient_checkpointing=gradient_checkpointing,
        optimizer=optimizer, lora_r=lora_r, params=count_params(config).total, trainable_params=trainable,
        notes=tuple(notes), optimizer_state=state, paged_out=paged_out,
    )


def _max_positions(config: dict) -> int:
    """max_position_embeddings, or a very large number when the config does not say."""
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    return int(cfg.get("max_position_embeddings") or 10**9)


# A verdict of "fits" leaves this much of the card unused. Why 15%: the estimate itself is within about
# 10% of measurements for HF models (tests/test_estimate.py), sequence lengths and the allocator vary
# from step to step, and a desktop or another process often holds a few hundred MB of the same card.
TIGHT_FRACTION = 0.85


def verdict(estimate: Estimate | int, gpu_total_bytes: int) -> str:
    """"fits", "tight" (above 85% of the card) or "does not fit"."""
    total = estimate if isinstance(estimate, int) else estimate.total
    if gpu_total_bytes <= 0:
        raise ValueError("gpu_total_bytes must be positive")
    if total > gpu_total_bytes:
        return "does not fit"
    if total > TIGHT_FRACTION * gpu_total_bytes:
        return "tight"
    return "fits"


__all__ = [
    "Estimate", "estimate", "verdict", "weight_bytes", "activation_setup", "layer_activation_bytes", "nf4_bytes",
    "trainable_state", "resolve_targets", "METHODS", "OPTIMIZERS", "TIGHT_FRACTION", "ParamCounts", "rank_of",
    "adapted",
]
