"""Exact parameter counts from a config.json dict, without instantiating the model.

Why exact: the weights are most of a QLoRA estimate, and an exact count is cheap (a few multiplications per
layer). tests/test_estimate_archs.py checks real configs of every supported family against the model built on
the meta device (transformers 5.24).

The split matters because each part is stored differently:
- ``linear``: the decoder layers' nn.Linear weights. QLoRA quantizes exactly these to NF4 (bitsandbytes
  skips the lm_head and never touches embeddings or norms); LoRA targets are chosen among them.
- ``experts``: transformers 5 fuses a mixture-of-experts layer's experts into 3-D parameters
  ([experts, d_out, d_in]); they are not nn.Linear, so bitsandbytes leaves them in 16-bit (checked with
  bitsandbytes 0.50 on Mixtral) and peft wraps them with its ParamWrapper.
- ``biases``, ``embeddings``, ``lm_head`` (0 when tied), ``norms``, ``other`` (routers, attention sinks,
  a multimodal wrapper's vision tower and projector): never quantized by the engine's QLoRA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TunetopError

# Families whose decoder layer is "attention + MLP (dense or mixture-of-experts) + RMSNorms", each with the
# flags below. The value says what differs from Llama.
FAMILIES = {
    "llama": "Llama 1-3.3, SmolLM 1/2, DeepSeek-R1 Llama distills",
    "mistral": "Mistral 7B, Nemo, Small 3",
    "qwen2": "Qwen2/2.5, DeepSeek-R1 Qwen distills (q/k/v biases)",
    "qwen3": "Qwen3 (per-head q/k norms)",
    "qwen3_moe": "Qwen3-MoE (per-head q/k norms, fused experts)",
    "mixtral": "Mixtral (fused experts, top-k router)",
    "gemma": "Gemma 1",
    "gemma2": "Gemma 2 (four norms a layer, soft-capping)",
    "gemma3_text": "Gemma 3 text (four norms, per-head q/k norms)",
    "gemma3": "Gemma 3 multimodal wrapper (text part trained; vision tower loaded frozen)",
    "phi3": "Phi-3/3.5/4 (fused qkv_proj and gate_up_proj)",
    "olmo2": "OLMo-2 (full-width q/k norms, norms after attention and MLP)",
    "cohere": "Cohere Command-R (one LayerNorm, parallel attention and MLP)",
    "granite": "Granite 3.x",
    "smollm3": "SmolLM3",
    "deepseek_v2": "DeepSeek-V2 (multi-head latent attention, shared + routed experts)",
    "deepseek_v3": "DeepSeek-V3/R1 (multi-head latent attention, shared + routed experts)",
    "gpt_oss": "gpt-oss (attention sinks, biased fused experts)",
}
LLAMA_LIKE = set(FAMILIES)  # kept for callers that ask "is this family supported"


@dataclass(frozen=True)
class LinearModule:
    """One Linear of a decoder layer: what LoRA can target and what QLoRA quantizes."""

    name: str  # the attribute name peft matches in target_modules (q_proj, gate_up_proj, ...)
    d_in: int
    d_out: int
    bias: bool
    # Which tensor feeds it; modules sharing an input (q/k/v; gate/up) share saved activations.
    input_name: str
    experts: int = 1  # > 1: a fused [experts, d_out, d_in] parameter (not an nn.Linear)
    top_k: int = 0  # routed experts: how many of them each token passes through (0: every token, dense)

    @property
    def params(self) -> int:
        return self.experts * (self.d_in * self.d_out + (self.d_out if self.bias else 0))

    @property
    def quantizable(self) -> bool:
        """bitsandbytes replaces nn.Linear only; fused expert parameters stay in the load dtype."""
        return self.experts == 1

    @property
    def tokens_per_token(self) -> float:
        """How many times each token passes through this module: top_k / experts of it, per expert."""
        return 1.0 if not self.top_k else self.top_k / self.experts


@dataclass(frozen=True)
class Layer:
    """`count` identical decoder layers (DeepSeek's first dense layers differ from its MoE layers)."""

    count: int
    modules: tuple[LinearModule, ...]
    norm_params: int  # weights (and biases) of the layer's norms, q/k norms included
    other_params: int = 0  # router weights, attention sinks: 16-bit, never quantized
    router: tuple[int, int] | None = None  # (d_in, experts) of a router peft can target ("gate.weight")
    moe: bool = False


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
    qk_norm: str = "none"  # "head" (Qwen3, Gemma 3, Cohere+), "full" (OLMo-2), "none"
    v_head_dim: int = 0  # DeepSeek MLA: value head size (0: head_dim)
    experts: int = 0
    top_k: int = 0
    parallel: bool = False  # Cohere: attention and MLP read the same normed input
    layer_specs: tuple[Layer, ...] = field(default=(), compare=False, repr=False)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.v_head_dim or self.head_dim)


@dataclass(frozen=True)
class ParamCounts:
    linear: int  # quantizable: decoder nn.Linear weights
    biases: int
    embeddings: int
    lm_head: int  # 0 when tied
    norms: int
    experts: int = 0  # fused expert parameters (16-bit even under QLoRA)
    other: int = 0  # routers, sinks, a wrapper's vision tower and projector

    @property
    def total(self) -> int:
        return self.linear + self.biases + self.embeddings + self.lm_head + self.norms + self.experts + self.other

    @property
    def not_quantized(self) -> int:
        """What stays 16-bit (or fp32) under QLoRA."""
        return self.total - self.linear


class UnsupportedArchitecture(TunetopError, ValueError):
    """The config describes a model this estimator has no formula for (encoder-decoder, state-space, ...)."""


def text_part(config: dict) -> dict:
    """The language model of a config: multimodal wrappers (Gemma 3) nest it under text_config."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and "hidden_size" not in config:
        out = {**inner, "model_type": inner.get("model_type") or f"{config.get('model_type')}_text"}
        out.setdefault("vocab_size", config.get("vocab_size", inner.get("vocab_size")))
        return out
    return config


def _get(config: dict, key: str, default=None):
    value = config.get(key)
    return default if value is None else value


def _int(config: dict, key: str) -> int:
    try:
        return int(config[key])
    except KeyError:
        raise UnsupportedArchitecture(f"config.json lacks {key!r}, which the estimate needs") from None


def _moe_layer(config: dict, mt: str, i: int) -> bool:
    """Whether decoder layer i is a mixture-of-experts layer, as transformers decides it."""
    if mt == "mixtral" or mt == "gpt_oss":
        return True
    if mt == "qwen3_moe":
        step = int(_get(config, "decoder_sparse_step", 1))
        return (i not in (config.get("mlp_only_layers") or [])) and int(_get(config, "num_experts", 0)) > 0 \
            and (i + 1) % step == 0
    if mt in ("deepseek_v2", "deepseek_v3"):
        freq = int(_get(config, "moe_layer_freq", 1))
        return int(_get(config, "n_routed_experts", 0)) > 0 and i >= int(_get(config, "first_k_dense_replace", 0)) \
            and i % freq == 0
    return False


def shape_of(config: dict) -> Shape:
    """Read the dimensions, with the same defaults transformers applies."""
    config = text_part(config)
    mt = str(config.get("model_type", "")).lower()
    if mt not in FAMILIES:
        raise UnsupportedArchitecture(
            f"model_type {mt or '(missing)'!r} is not supported by the estimate",
            f"supported families: {', '.join(sorted(FAMILIES))}; launching still works",
        )
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    layers = _int(config, "num_hidden_layers")
    kv_heads = int(_get(config, "num_key_value_heads", heads))
    mla = mt.startswith("deepseek")
    if mla:
        head_dim = int(_get(config, "qk_nope_head_dim", 128)) + int(_get(config, "qk_rope_head_dim", 64))
        kv_heads = heads
    else:
        head_dim = int(_get(config, "head_dim", hidden // heads))
    intermediate = _int(config, "intermediate_size")
    specs = tuple(_layers(config, mt, hidden, heads, kv_heads, head_dim, intermediate, layers))
    moe = next((s for s in specs if s.moe), None)
    experts = max((m.experts for s in specs for m in s.modules), default=1)
    return Shape(
        model_type=mt, hidden=hidden, intermediate=intermediate, layers=layers, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, vocab=_int(config, "vocab_size"),
        # transformers' PreTrainedConfig defaults tie_word_embeddings to True.
        tied=bool(config.get("tie_word_embeddings", True)),
        norms_per_layer={"gemma2": 4, "gemma3_text": 4, "cohere": 1}.get(mt, 2),
        fused_qkv=mt == "phi3",
        qk_norm="full" if mt == "olmo2" else "head" if (mt in ("qwen3", "qwen3_moe", "gemma3_text") or (
            mt == "cohere" and config.get("use_qk_norm"))) else "none",
        v_head_dim=int(_get(config, "v_head_dim", 128)) if mla else 0,
        experts=experts if moe else 0,
        top_k=int(_get(config, "num_experts_per_tok", 2)) if moe else 0,
        parallel=mt == "cohere",
        layer_specs=specs,
    )


def _layers(config, mt, h, heads, kv_heads, head_dim, inter, n_layers) -> list[Layer]:
    q, kv = heads * head_dim, kv_heads * head_dim
    attention_bias = bool(config.get("attention_bias", False))
    mlp_bias = bool(config.get("mlp_bias", False))
    norm = h
    # -- attention --
    if mt.startswith("deepseek"):
        rope = int(_get(config, "qk_rope_head_dim", 64))
        v_head = int(_get(config, "v_head_dim", 128))
        kv_rank = int(_get(config, "kv_lora_rank", 512))
        q_rank = config.get("q_lora_rank")
        attn = []
        attn_norms = kv_rank
        if q_rank:
            attn += [LinearModule("q_a_proj", h, int(q_rank), attention_bias, "attn_in"),
                     LinearModule("q_b_proj", int(q_rank), q, False, "q_latent")]
            attn_norms += int(q_rank)
        else:
            attn.append(LinearModule("q_proj", h, q, False, "attn_in"))
        attn += [LinearModule("kv_a_proj_with_mqa", h, kv_rank + rope, attention_bias, "attn_in"),
                 LinearModule("kv_b_proj", kv_rank, heads * (head_dim - rope + v_head), False, "kv_latent"),
                 LinearModule("o_proj", heads * v_head, h, attention_bias, "attn_out")]
    elif mt == "phi3":
        attn = [LinearModule("qkv_proj", h, q + 2 * kv, attention_bias, "attn_in"),
                LinearModule("o_proj", q, h, attention_bias, "attn_out")]
        attn_norms = 0
    else:
        qkv_bias = mt == "qwen2" or attention_bias or mt == "gpt_oss"
        o_bias = (mt != "qwen2" and attention_bias) or mt == "gpt_oss"
        attn = [LinearModule("q_proj", h, q, qkv_bias, "attn_in"),
                LinearModule("k_proj", h, kv, qkv_bias, "attn_in"),
                LinearModule("v_proj", h, kv, qkv_bias, "attn_in"),
                LinearModule("o_proj", q, h, o_bias, "attn_out")]
        attn_norms = {"olmo2": q + kv}.get(mt, 0)
        if mt in ("qwen3", "qwen3_moe", "gemma3_text"):
            attn_norms = 2 * head_dim
        if mt == "cohere" and config.get("use_qk_norm"):
            attn_norms = q + kv
    # -- norms of a layer --
    norms = {"gemma2": 4, "gemma3_text": 4, "cohere": 1}.get(mt, 2) * norm + attn_norms
    mlp_in = "attn_in" if mt == "cohere" else "mlp_in"

    def dense(size: int, prefix: str = "") -> list[LinearModule]:
        if mt == "phi3":
            return [LinearModule("gate_up_proj", h, 2 * size, mlp_bias, mlp_in),
                    LinearModule("down_proj", size, h, mlp_bias, "mlp_act")]
        return [LinearModule(prefix + "gate_proj", h, size, mlp_bias, mlp_in),
                LinearModule(prefix + "up_proj", h, size, mlp_bias, mlp_in),
                LinearModule(prefix + "down_proj", size, h, mlp_bias, "mlp_act" + prefix)]

    out: list[Layer] = []
    for i in range(n_layers):
        if not _moe_layer(config, mt, i):
            layer = Layer(1, tuple(attn + dense(inter)), norms,
                          other_params=heads if mt == "gpt_oss" else 0)
        else:
            e = int(config.get("num_local_experts") or config.get("num_experts") or config.get("n_routed_experts"))
            k = int(_get(config, "num_experts_per_tok", 2))
            size = int(config.get("moe_intermediate_size") or inter)
            bias = mt == "gpt_oss"
            experts = [LinearModule("gate_up_proj", h, 2 * size, bias, "expert_in", e, k),
                       LinearModule("down_proj", size, h, bias, "expert_act", e, k)]
            shared = []
            if mt.startswith("deepseek") and int(_get(config, "n_shared_experts", 0)):
                shared = dense(size * int(config["n_shared_experts"]), "shared_experts.")
            # Router: Mixtral/Qwen3-MoE/DeepSeek "gate" (experts x hidden, no bias); gpt-oss "router" (+bias).
            router = e * h + (e if bias else 0)
            layer = Layer(1, tuple(attn + experts + shared), norms, other_params=router + (heads if bias else 0),
                          router=None if bias else (h, e), moe=True)
        if out and out[-1].modules == layer.modules and out[-1].moe == layer.moe:
            out[-1] = Layer(out[-1].count + 1, layer.modules, layer.norm_params, layer.other_params, layer.router,
                            layer.moe)
        else:
            out.append(layer)
    return out


def linear_modules(config: dict) -> list[LinearModule]:
    """The Linear layers of the model's last decoder layer (its MoE layer where it has both), in order."""
    return list(shape_of(config).layer_specs[-1].modules)


def all_module_names(config: dict) -> list[str]:
    """Every name target_modules can use on this architecture."""
    names: list[str] = []
    for spec in shape_of(config).layer_specs:
        for m in spec.modules:
            short = m.name.rpartition(".")[-1]
            if short not in names:
                names.append(short)
    return names


def vision_params(config: dict) -> int:
    """The SigLIP vision tower and projector a Gemma 3 wrapper loads beside its language model."""
    v = config.get("vision_config")
    if not isinstance(v, dict) or "hidden_size" not in config.get("text_config", {}):
        return 0
    hv, iv = int(_get(v, "hidden_size", 1152)), int(_get(v, "intermediate_size", 4304))
    layers, patch = int(_get(v, "num_hidden_layers", 27)), int(_get(v, "patch_size", 14))
    image, channels = int(_get(v, "image_size", 896)), int(_get(v, "num_channels", 3))
    n = channels * patch * patch * hv + hv + (image // patch) ** 2 * hv
    block = 2 * hv + 4 * (hv * hv + hv) + 2 * hv + (hv * iv + iv) + (iv * hv + hv)
    n += layers * block + 2 * hv
    if v.get("vision_use_head", True):
        n += hv + 3 * hv * hv + 3 * hv + hv * hv + hv + 2 * hv + (hv * iv + iv) + (iv * hv + hv)
    text_hidden = int(config["text_config"]["hidden_size"])
    return n + hv * text_hidden + hv


def count_params(config: dict) -> ParamCounts:
    """Exact counts; equal to sum(p.numel()) of the model built on the meta device."""
    s = shape_of(config)
    linear = experts = biases = norms = other = 0
    for spec in s.layer_specs:
        for m in spec.modules:
            if m.quantizable:
                linear += spec.count * m.d_in * m.d_out
                biases += spec.count * (m.d_out if m.bias else 0)
            else:
                experts += spec.count * m.params
        norms += spec.count * spec.norm_params
        other += spec.count * spec.other_params
    embeddings = s.vocab * s.hidden
    lm_head = 0 if s.tied else s.vocab * s.hidden
    norms += s.hidden  # the final norm
    return ParamCounts(linear=linear, biases=biases, embeddings=embeddings, lm_head=lm_head, norms=norms,
                       experts=experts, other=other + vision_params(config))
