"""Activation and logits memory: what autograd keeps between the forward and the backward.

Why per tensor rather than one constant: the bytes depend on which Linears are trainable, on whether LoRA
adapters are cast to another dtype (every cast is a separate saved copy), on the attention path and on the
loss implementation, and each of these choices moves the total by gigabytes at 8B scale. Every term below
names the tensor autograd saves; tests/test_estimate.py sums the saved tensors of real small models
(saved-tensor hooks: the per-layer terms match to the byte for Llama, Qwen2, Gemma 2 and Phi-3 layers) and
measures the peak of a whole step (activations + logits within a few percent).

Notation, per token of one decoder layer: h hidden, I intermediate, q = heads x head_dim, kv = kv_heads x
head_dim, nh heads, c bytes of the compute dtype (2 for bf16/fp16), r the LoRA rank.

Measured (HF Llama, SDPA, bf16, no autocast, fp32 adapters, docs/facts.md "VRAM estimate: facts"):
  full fine-tune: 16h + 4q + 4kv + 4nh + 8I + 8 (= 20h + 8I + 4kv + 4nh + 8 when q = h)
  LoRA, all-linear: 8h + 4q + 4kv + 4nh + 6I + 8 + sum over targets (4 d_in + 4r)
                    (= 36h + 10I + 4kv + 4nh + 4r x 7 + 8 when q = h)
The same model under autocast (what the HF Trainer does with bf16=True) saves the 2-byte cast instead of
the 4-byte one; with bf16 adapters (TRL's SFTTrainer casts QLoRA adapters to bf16) q/k/v share one saved
input; after prepare_model_for_kbit_training (tunetop's QLoRA) the residual stream is fp32, so every
adapted input is cast again per module and the MLP's saved tensors double.
"""

from __future__ import annotations

from dataclasses import dataclass

from .params import LinearModule, Shape


def rank_of(m: LinearModule, r: int) -> int:
    """peft's rank for a module: a fused gate_up_proj of experts gets one r per fused projection."""
    return 2 * r if (m.experts > 1 and m.name == "gate_up_proj") else r

# TRL's fused LM head (trl.kernels.chunked_logprob) projects tiles of this many tokens x this many
# vocabulary entries, never the whole [tokens, vocab] logits.
FUSED_TOKEN_TILE = 4096
FUSED_VOCAB_TILE = 32768


@dataclass(frozen=True)
class ActivationSetup:
    """Everything about the training setup that changes what autograd saves."""

    method: str  # "full" | "lora" | "qlora"
    c: int  # bytes of the compute dtype of activations
    targets: frozenset[str]  # LoRA target module names (empty for full)
    r: int
    adapter_bytes: int  # bytes of one adapter weight (4 fp32, 2 bf16)
    autocast: bool
    lora_dropout: float
    attn_implementation: str  # "sdpa" | "eager" | "flash" (flash-attention kernels: unpadded, no mask)
    padding_free: bool  # no attention mask: GQA stays grouped; with a mask, k/v are repeated to q heads
    seq_len: int
    base_weight_bytes: int = 2  # storage of the base Linear weights; 0 for NF4 (dequantized on the fly)
    # Bytes of the residual stream, of the norms' outputs and of 4-bit Linears' outputs (bitsandbytes
    # returns its input's dtype): c, or 4 once prepare_model_for_kbit_training made the embeddings and the
    # norm weights fp32 (type promotion then carries fp32 through the residual stream).
    residual_bytes: int = 2
    use_dora: bool = False
    # The dropout mask: a bool (1 byte) per element on CUDA; CPU kernels save a 4-byte float mask.
    dropout_mask_bytes: int = 1


def _norm_bytes(s: Shape, st: ActivationSetup) -> int:
    """One RMSNorm, not counting its output (the consumer saves that if it needs it).

    Llama-style: hidden.to(fp32) is saved by pow and mul (4h), rsqrt (4 bytes a token); with a trainable
    weight also the normalized bf16 tensor the weight multiplies (c h). Gemma computes in fp32 throughout,
    so its trainable-weight term is 4h.
    """
    b = 4 * s.hidden + 4
    if s.model_type == "cohere":
        # Cohere's LayerNorm centres before it scales: its fp32 centred input and square are saved too
        # (measured: 10h + 4 bytes a token more than an RMSNorm).
        b += 10 * s.hidden + 4
    if st.method == "full":
        b += (4 if s.model_type.startswith("gemma") else st.c) * s.hidden
    return b


def _attention_core_bytes(s: Shape, st: ActivationSetup) -> int:
    """Tensors the attention itself saves, whatever is trained.

    SDPA (flash / memory-efficient kernels): rotated q (c q), k and v (c kv each, or c q each when an
    attention mask forces transformers to repeat the KV heads), the output (c q) and the fp32 logsumexp
    (4 per head). With an attention mask SDPA converts the bool mask to a c-byte additive one in every
    layer, and the kernel saves it: c x T per token per layer. Eager: q, repeated k and v, the fp32 softmax
    and its c-byte cast (and Gemma 2's tanh soft-capping output) over all T keys of every head; its mask is
    added, not saved. Flash-attention kernels unpad the batch: no mask, grouped KV heads.
    """
    c = st.c
    if st.attn_implementation == "eager":
        per_key = 4 + c + (c if s.model_type == "gemma2" else 0)
        return c * s.q_dim + 2 * c * s.q_dim + s.heads * st.seq_len * per_key
    masked = not st.padding_free and st.attn_implementation == "sdpa"
    kv_saved = s.q_dim if masked else s.kv_dim
    b = c * s.q_dim + 2 * c * kv_saved + c * s.q_dim + 4 * s.heads
    if masked:
        b += c * st.seq_len
    if s.fused_qkv and not masked:
        # Phi-3: v is a view of the fused qkv output, so the whole qkv tensor stays alive.
        b += c * (s.q_dim + s.kv_dim)
    return b


def _qk_norm_bytes(s: Shape, st: ActivationSetup) -> int:
    """Qwen3 / Gemma 3 (per head) and OLMo-2 (full width) normalize q and k after their projections: like any
    RMSNorm each saves its fp32 input and one rsqrt per normalized row (per head, or one for the full width);
    with trainable weights also the normalized c-byte tensor."""
    if s.qk_norm == "none":
        return 0
    width = s.q_dim + s.kv_heads * s.head_dim
    rows = (s.heads + s.kv_heads) if s.qk_norm == "head" else 2
    b = 4 * width + 4 * rows
    if st.method == "full":
        b += (4 if s.model_type.startswith("gemma") else st.c) * width
    return b


def _mlp_core_bytes(s: Shape, st: ActivationSetup, modules: list[LinearModule]) -> int:
    """gate output (saved by the activation), activation output and up output (saved by the product), per
    token slot of each MLP: dense MLPs (and shared experts) see every token, routed experts top_k of them.

    Their dtype is the MLP input's for 4-bit Linears (fp32 after prepare_model_for_kbit_training).
    Routed experts also keep the gathered input of each token slot (c h), the expert output the routing weight
    multiplies (c h), the routing weight itself, and the router's fp32 softmax over the experts.
    """
    out = st.residual_bytes if st.method == "qlora" else st.c
    b = 0
    for m in modules:
        if not m.input_name.startswith(("mlp_act", "expert_act")):
            continue  # one down projection per MLP: its d_in is that MLP's intermediate size
        slots = m.top_k or 1
        b += slots * 3 * out * m.d_in
        if m.top_k:
            # Per token slot (measured on Mixtral / Qwen3-MoE layers, transformers 5 eager experts): the gathered
            # input and the expert output (c h each), the fp32 routing weight and three int64 index tensors.
            # When the experts' weights take gradients (LoRA through peft's ParamWrapper), the down projection
            # also keeps its input (c I). Per token, the router: fp32 logits over the experts, the top-k indices
            # (int64) and weights (fp32), and its input when the router itself is adapted.
            b += slots * (2 * st.c * s.hidden + 4 + 24)
            if st.method != "full" and "experts." + m.name in st.targets:
                b += slots * st.c * m.d_in
            b += 4 * m.experts + 12 * m.top_k + 4
            if st.method != "full" and "router" in st.targets:
                b += st.c * s.hidden
    return b


def _linear_input_bytes(s: Shape, st: ActivationSetup, modules: list[LinearModule]) -> int:
    """What the Linears save to compute their weight gradients (full) or their adapters' (LoRA)."""
    c = st.c
    # The tensor named "attn_out" is the attention output, already saved by SDPA (same storage).
    free_inputs = {"attn_out"} if st.attn_implementation != "eager" else set()
    if st.method == "full":
        # Every Linear saves its input; modules that share an input share it.
        seen = {m.input_name: m.d_in * (m.top_k or 1) for m in modules}
        return sum(c * d for name, d in seen.items() if name not in free_inputs)

    def input_bytes(m: LinearModule) -> int:
        # The attention output is in the compute dtype; the norms' outputs and the MLP product follow the
        # residual stream (fp32 after prepare_model_for_kbit_training, for QLoRA).
        if m.input_name == "attn_out" or st.method != "qlora":
            return c
        return st.residual_bytes

    total = 0
    shared: dict[str, int] = {}
    # The adapter matmul runs in the adapter dtype, unless autocast runs it in the compute dtype.
    lora_c = c if st.autocast else st.adapter_bytes
    for m in modules:
        if ("experts." + m.name if m.experts > 1 else m.name) not in st.targets:
            continue  # a frozen Linear saves nothing but its weight, which is already counted
        if m.experts > 1:
            # peft's ParamWrapper adds B @ A to the fused expert weight for the forward: the input of each token
            # slot (already saved by the experts' own matmul, counted in the MLP core) and nothing per token
            # more; the merged weight itself is a per-layer term (weight_cast_bytes_per_layer).
            continue
        x = input_bytes(m)
        # peft's LoRA Linear casts its input to the adapter dtype (a new tensor when they differ); its 4-bit
        # Linear skips that cast under autocast. Autocast then casts to the compute dtype if needed. Any
        # cast makes a copy per module; without one, modules sharing an input (q/k/v) share one saved x.
        peft_cast = x != st.adapter_bytes and not (st.method == "qlora" and st.autocast)
        autocast_cast = st.autocast and (st.adapter_bytes if peft_cast else x) != c
        if st.lora_dropout > 0:
            # The dropout mask (bool on CUDA, 1 byte; fp32 on CPU) and the dropped-out input, one per module.
            total += (st.dropout_mask_bytes + lora_c) * m.d_in
        elif peft_cast or autocast_cast:
            total += lora_c * m.d_in
        else:
            shared[m.input_name] = x * m.d_in
        total += lora_c * st.r  # lora_A's output, saved by lora_B
        if st.use_dora:
            total += dora_bytes_per_token(m, st)
    total += sum(b for name, b in shared.items() if name not in free_inputs)
    return total


def dora_bytes_per_token(m: LinearModule, st: ActivationSetup) -> int:
    """DoRA (peft's use_dora) rescales each adapted output by magnitude / ||W + BA||: per token it keeps the
    base layer's output and the adapter's output for the product with the scale (c d_out each), its
    (x @ A) @ B result in the adapter dtype, and the dropped-out input once more when dropout is on.
    Measured on CPU (tests/test_estimate_switches.py): DoRA saves about twice LoRA's per adapted layer.
    """
    lora_c = st.c if st.autocast else st.adapter_bytes
    return 2 * st.c * m.d_out + lora_c * m.d_out


def layer_bytes_per_token(s: Shape, st: ActivationSetup, modules: list[LinearModule]) -> int:
    """Saved activations of one decoder layer, per token, without gradient checkpointing."""
    return (
        s.norms_per_layer * _norm_bytes(s, st)
        + _qk_norm_bytes(s, st)
        + _attention_core_bytes(s, st)
        + _mlp_core_bytes(s, st, modules)
        + _linear_input_bytes(s, st, modules)
    )


def weight_cast_bytes_per_layer(s: Shape, st: ActivationSetup, modules: list[LinearModule]) -> int:
    """Under autocast, weights stored wider than the compute dtype are cast for each matmul, and the cast is
    saved for the backward: c bytes per weight of one layer (per layer, not per token).

    fp32 LoRA adapters (peft's default): c x r x (d_in + d_out) per target. fp32 base weights (full
    fine-tuning with fp32 master weights): c x d_in x d_out per Linear. NF4 weights are dequantized
    inside bitsandbytes' matmul and not saved.
    """
    b = 0
    if st.method != "full":
        # peft's ParamWrapper merges B @ A into each adapted fused expert weight for the forward: the merged
        # [experts, d_out, d_in] weight requires grad, so the experts' matmul saves it (c bytes a weight).
        # It also keeps the reshaped lora_A / lora_B of every expert (c bytes a parameter).
        b += st.c * sum(m.params + rank_of(m, st.r) * m.experts * (m.d_in + m.d_out)
                        for m in modules if m.experts > 1 and "experts." + m.name in st.targets)
    if not st.autocast:
        return b
    if st.base_weight_bytes > st.c:
        b += st.c * sum(m.params for m in modules)
    if st.method != "full" and st.adapter_bytes > st.c:
        b += st.c * st.r * sum(m.d_in + m.d_out for m in modules if m.experts == 1 and m.name in st.targets)
    return b


def recompute_transient_bytes_per_token(s: Shape, st: ActivationSetup) -> int:
    """Gradients alive while a recomputed layer runs its backward, on top of its saved activations.

    Measured at the peak of a checkpointed step (small vocabulary, so the layer and not the loss sets it):
    the gradient arriving from the layer above (c h) and, in the MLP's backward, the gradient of the
    down-projection input from the frozen path, from the adapter path and their sum (3 c I). Adapters in
    another dtype than the compute dtype carry one more fp32 gradient of that size (4 I).
    """
    b = st.residual_bytes * s.hidden + 3 * st.c * s.intermediate
    if st.method != "full" and (st.adapter_bytes != st.c or st.residual_bytes != st.c):
        b += 4 * s.intermediate
    return b


def checkpoint_bytes_per_token(s: Shape, st: ActivationSetup) -> int:
    """With gradient checkpointing each layer keeps only its input hidden state (c h, or 4h if fp32)."""
    return st.residual_bytes * s.hidden


def head_bytes_per_token(s: Shape, st: ActivationSetup, loss: str = "full") -> int:
    """The final norm, plus the int64 label. With the plain loss a trainable lm_head (full fine-tuning)
    saves its input too; the fused LM head saves its own copy of it, counted in logits_bytes."""
    b = _norm_bytes(s, st) + 8
    if st.method == "full" and loss == "full":
        b += st.c * s.hidden
    return b


def logits_bytes(s: Shape, st: ActivationSetup, tokens: int, loss: str, lm_head_bytes: int) -> int:
    """Memory of the output projection and the loss at their peak (the start of the backward).

    loss="full" (model(labels=...) as in a plain Trainer): the forward makes the c-byte logits and their fp32
    upcast, the loss saves its fp32 log-softmax, and the backward starts with two fp32 gradients alive next
    to it: 12 bytes per vocabulary entry per token at the peak (measured). The Trainer drops the model's
    outputs before the backward; code that keeps the logits alive adds c more (docs/facts.md's "about 14").
    Gemma 2's final soft-capping saves its c-byte tanh output.
    With a plain loss under autocast, an fp32 lm_head's c-byte copy (c V h) is saved for the backward.
    loss="fused" (TRL >= 1.16 SFTTrainer, Triton kernels on CUDA): one c-byte tile of FUSED_TOKEN_TILE
    tokens x FUSED_VOCAB_TILE vocabulary entries; per token the compacted hidden state, the fp32 gradient
    of the hidden state and its cast back, and a few fp32 statistics; for full fine-tuning the fp32
    gradient of the lm_head weight (4 V h) before it is cast; when the lm_head is stored in another dtype
    than the compute dtype (fp32 after prepare_model_for_kbit_training) each tile casts a slice of it
    (c x 32768 x h). Read from trl/kernels/chunked_logprob.py; on CPU its torch fallback also keeps fp32
    temporaries of each tile, which CUDA's in-place kernel does not.
    """
    if loss == "full":
        per_entry = 12 + (st.c if s.model_type == "gemma2" else 0)
        b = tokens * s.vocab * per_entry
        if st.autocast and lm_head_bytes > st.c:
            b += st.c * s.vocab * s.hidden  # autocast's c-byte copy of an fp32 lm_head, saved for the backward
        return b
    if loss != "fused":
        raise ValueError(f"loss must be 'full' or 'fused', not {loss!r}")
    # The tile buffer is allocated FUSED_VOCAB_TILE wide even when the vocabulary is smaller.
    tile = min(tokens, FUSED_TOKEN_TILE) * FUSED_VOCAB_TILE * st.c
    hb = st.residual_bytes  # dtype of the hidden states entering the head
    per_token = hb * s.hidden + 4 * s.hidden + (hb * s.hidden if hb != 4 else 0) + 48
    b = tile + tokens * per_token
    if st.method == "full":
        b += 4 * s.vocab * s.hidden
    if lm_head_bytes != st.c:
        b += st.c * min(s.vocab, FUSED_VOCAB_TILE) * s.hidden
    return b
