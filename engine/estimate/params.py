"""Exact parameter counts from a config.json dict, without instantiating the model.

Why exact: the weights are most of a QLoRA estimate, and an exact count is cheap (a few multiplications per
layer). tests/test_estimate.py checks every bundled architecture against the model built on the meta device.

The split matters because each part is stored differently:
- ``linear``: the decoder layers' Linear weights. QLoRA quantizes exactly these to NF4 (bitsandbytes skips
  the lm_head and never touches embeddings or norms); LoRA targets are chosen among them.
- ``biases``: Linear biases (Qwen2's q/k/v). bitsandbytes keeps them in the compute dtype.
- ``embeddings``, ``lm_head`` (0 when tied to the embeddings), ``norms``: never quantized.
"""

from __future__ import annotations

from dataclasses import dataclass

# Decoder families whose layer layout is the Llama one (attention q/k/v/o, gated MLP gate/up/down, two
# RMSNorms per layer). Differences are expressed as flags below rather than as separate code paths.
LLAMA_LIKE = {"llama", "mistral", "qwen2", "gemma", "gemma2", "phi3", "qwen3", "granite", "olmo2", "cohere"}


@dataclass(frozen=True)
class LinearModule:
    """One Linear of a decoder layer: what LoRA can target and what QLoRA quantizes."""

    name: str  # the attribute name peft matches in target_modules (q_proj, gate_up_proj, ...)
    d_in: int
    d_out: int
    bias: bool
    # Which tensor feeds it; modules sharing an input (q/k/v; gate/up) share saved activations.
    input_name: str


@dataclass(frozen=True)
class Shape:
    """The dimensions the memory formulas need, read once from the config."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    norms_per_layer: int
    fused_qkv: bool  # Phi-3 packs q, k and v into one qkv_proj, and gate/up into one gate_up_proj

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class ParamCounts:
    linear: int  # quantizable: decoder Linear weights
    biases: int
    embeddings: int
    lm_head: int  # 0 when tied
    norms: int

    @property
    def total(self) -> int:
        return self.linear + self.biases + self.embeddings + self.lm_head + self.norms

    @property
    def not_quantized(self) -> int:
        """What stays 16-bit (or fp32) under QLoRA."""
        return self.total - self.linear


class UnsupportedArchitecture(ValueError):
    """The config describes a model this estimator has no formula for (MoE, encoder-decoder, ...)."""


def shape_of(config: dict) -> Shape:
    """Read the dimensions, with the same defaults transformers applies."""
    model_type = str(config.get("model_type", "")).lower()
    if model_type not in LLAMA_LIKE:
        raise UnsupportedArchitecture(
            f"model_type {model_type or '(missing)'!r} is not supported by the estimate "
            f"(supported: {', '.join(sorted(LLAMA_LIKE))})"
        )
    if config.get("num_local_experts") or config.get("num_experts"):
        raise UnsupportedArchitecture("mixture-of-experts models are not supported by the estimate")
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        shape = Shape(
            model_type=model_type,
            hidden=hidden,
            intermediate=int(config["intermediate_size"]),
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            # Absent means multi-head attention (transformers' default: kv heads = heads).
            kv_heads=int(config.get("num_key_value_heads") or heads),
            # Absent or null means hidden/heads; Gemma sets it explicitly (256 with 8 heads of a 2304 model).
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab=int(config["vocab_size"]),
            # transformers' PreTrainedConfig defaults tie_word_embeddings to True.
            tied=bool(config.get("tie_word_embeddings", True)),
            # Gemma 2 (and 3) add pre/post feed-forward norms around the MLP: four per layer.
            norms_per_layer=4 if model_type in ("gemma2", "gemma3_text") else 2,
            fused_qkv=model_type == "phi3",
        )
    except KeyError as exc:
        raise UnsupportedArchitecture(f"config.json lacks {exc.args[0]!r}, which the estimate needs") from None
    return shape


def linear_modules(config: dict) -> list[LinearModule]:
    """The Linear layers of one decoder layer, in forward order."""
    s = shape_of(config)
    mt = s.model_type
    # Qwen2 hard-codes bias on q/k/v (not o); Llama/Mistral/Qwen3/Granite read attention_bias (all four).
    qkv_bias = mt == "qwen2" or bool(config.get("attention_bias", False))
    o_bias = mt != "qwen2" and bool(config.get("attention_bias", False))
    mlp_bias = bool(config.get("mlp_bias", False))
    h, i = s.hidden, s.intermediate
    if s.fused_qkv:
        return [
            LinearModule("qkv_proj", h, s.q_dim + 2 * s.kv_dim, qkv_bias, "attn_in"),
            LinearModule("o_proj", s.q_dim, h, o_bias, "attn_out"),
            LinearModule("gate_up_proj", h, 2 * i, mlp_bias, "mlp_in"),
            LinearModule("down_proj", i, h, mlp_bias, "mlp_act"),
        ]
    return [
        LinearModule("q_proj", h, s.q_dim, qkv_bias, "attn_in"),
        LinearModule("k_proj", h, s.kv_dim, qkv_bias, "attn_in"),
        LinearModule("v_proj", h, s.kv_dim, qkv_bias, "attn_in"),
        LinearModule("o_proj", s.q_dim, h, o_bias, "attn_out"),
        LinearModule("gate_proj", h, i, mlp_bias, "mlp_in"),
        LinearModule("up_proj", h, i, mlp_bias, "mlp_in"),
        LinearModule("down_proj", i, h, mlp_bias, "mlp_act"),
    ]


def count_params(config: dict) -> ParamCounts:
    """Exact counts; equal to sum(p.numel()) of the model built on the meta device."""
    s = shape_of(config)
    mods = linear_modules(config)
    linear = s.layers * sum(m.d_in * m.d_out for m in mods)
    biases = s.layers * sum(m.d_out for m in mods if m.bias)
    embeddings = s.vocab * s.hidden
    lm_head = 0 if s.tied else s.vocab * s.hidden
    # Each RMSNorm has one weight of size hidden; plus the final norm.
    norms = (s.layers * s.norms_per_layer + 1) * s.hidden
    return ParamCounts(linear=linear, biases=biases, embeddings=embeddings, lm_head=lm_head, norms=norms)
