"""Bundled config.json excerpts for popular architectures.

Why: an estimate must work before anything is downloaded (no network to the hub is assumed). These are the
fields of the real config.json files that the parameter count and the activation estimate need, copied
from the published configs (tests/test_estimate.py checks every entry against the model instantiated on
the meta device). Fields that do not change the memory (token ids, dropout, rope scaling details) are
left out; ``AutoConfig.for_model(**cfg)`` fills them with defaults, which is enough to count parameters.

Keys are hub ids. ``lookup`` also accepts the -Instruct / -it variants, which share the architecture.
"""

from __future__ import annotations

# Shared blocks, so a family's constants are written once.
_LLAMA3 = {
    "model_type": "llama",
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "torch_dtype": "bfloat16",
}
_LLAMA2 = {
    "model_type": "llama",
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "torch_dtype": "float16",
}
_QWEN25 = {
    "model_type": "qwen2",
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "use_sliding_window": False,
    "torch_dtype": "bfloat16",
}
_GEMMA2 = {
    "model_type": "gemma2",
    "vocab_size": 256000,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "hidden_activation": "gelu_pytorch_tanh",
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "sliding_window": 4096,
    "torch_dtype": "float32",
}

ARCHITECTURES: dict[str, dict] = {
    # --- Llama 3.x (GQA with 8 KV heads; 3.2 small models tie the embeddings) ---
    "meta-llama/Llama-3.2-1B": {
        **_LLAMA3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "tie_word_embeddings": True,
    },
    "meta-llama/Llama-3.2-3B": {
        **_LLAMA3, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
        "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True,
    },
    "meta-llama/Llama-3.1-8B": {
        **_LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
    },
    "meta-llama/Llama-3.1-70B": {
        **_LLAMA3, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
    },
    # --- Llama 2 (multi-head attention, 32k vocabulary) ---
    "meta-llama/Llama-2-7b-hf": {
        **_LLAMA2, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32,
    },
    "meta-llama/Llama-2-13b-hf": {
        **_LLAMA2, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
        "num_attention_heads": 40, "num_key_value_heads": 40,
    },
    # --- Mistral ---
    "mistralai/Mistral-7B-v0.3": {
        "model_type": "mistral", "vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
        "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16",
    },
    # --- Qwen2.5 (q/k/v carry a bias; the three smallest tie the embeddings) ---
    "Qwen/Qwen2.5-0.5B": {
        **_QWEN25, "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-1.5B": {
        **_QWEN25, "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 131072,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-3B": {
        **_QWEN25, "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
        "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-7B": {
        **_QWEN25, "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen2.5-14B": {
        **_QWEN25, "vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
        "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen2.5-32B": {
        **_QWEN25, "vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
        "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen2.5-72B": {
        **_QWEN25, "vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    # --- Gemma 2 (head_dim is not hidden/heads; four norms per layer; 256k vocabulary, tied) ---
    "google/gemma-2-2b": {
        **_GEMMA2, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
    },
    "google/gemma-2-9b": {
        **_GEMMA2, "hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "query_pre_attn_scalar": 256,
    },
    "google/gemma-2-27b": {
        **_GEMMA2, "hidden_size": 4608, "intermediate_size": 36864, "num_hidden_layers": 46,
        "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128, "query_pre_attn_scalar": 144,
    },
    # --- Phi-3 (fused qkv_proj and gate_up_proj) ---
    "microsoft/Phi-3-mini-4k-instruct": {
        "model_type": "phi3", "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "max_position_embeddings": 4096, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": False, "hidden_act": "silu",
        "pad_token_id": 32000, "torch_dtype": "bfloat16",
    },
}

# Instruct variants share the base architecture. Where a variant's config differs in a field that does not
# change memory (Qwen2.5-7B+ Instruct ship max_position_embeddings 32768) the override says so.
_VARIANTS: dict[str, tuple[str, dict]] = {
    "meta-llama/Llama-3.2-1B-Instruct": ("meta-llama/Llama-3.2-1B", {}),
    "meta-llama/Llama-3.2-3B-Instruct": ("meta-llama/Llama-3.2-3B", {}),
    "meta-llama/Llama-3.1-8B-Instruct": ("meta-llama/Llama-3.1-8B", {}),
    "meta-llama/Llama-3.1-70B-Instruct": ("meta-llama/Llama-3.1-70B", {}),
    "meta-llama/Meta-Llama-3.1-8B": ("meta-llama/Llama-3.1-8B", {}),
    "meta-llama/Meta-Llama-3.1-8B-Instruct": ("meta-llama/Llama-3.1-8B", {}),
    "meta-llama/Meta-Llama-3.1-70B": ("meta-llama/Llama-3.1-70B", {}),
    "meta-llama/Meta-Llama-3.1-70B-Instruct": ("meta-llama/Llama-3.1-70B", {}),
    "meta-llama/Llama-2-7b-chat-hf": ("meta-llama/Llama-2-7b-hf", {}),
    "meta-llama/Llama-2-13b-chat-hf": ("meta-llama/Llama-2-13b-hf", {}),
    "mistralai/Mistral-7B-Instruct-v0.3": ("mistralai/Mistral-7B-v0.3", {}),
    "Qwen/Qwen2.5-0.5B-Instruct": ("Qwen/Qwen2.5-0.5B", {}),
    "Qwen/Qwen2.5-1.5B-Instruct": ("Qwen/Qwen2.5-1.5B", {"max_position_embeddings": 32768}),
    "Qwen/Qwen2.5-3B-Instruct": ("Qwen/Qwen2.5-3B", {}),
    "Qwen/Qwen2.5-7B-Instruct": ("Qwen/Qwen2.5-7B", {"max_position_embeddings": 32768}),
    "Qwen/Qwen2.5-14B-Instruct": ("Qwen/Qwen2.5-14B", {"max_position_embeddings": 32768}),
    "Qwen/Qwen2.5-32B-Instruct": ("Qwen/Qwen2.5-32B", {"max_position_embeddings": 32768}),
    "Qwen/Qwen2.5-72B-Instruct": ("Qwen/Qwen2.5-72B", {"max_position_embeddings": 32768}),
    "google/gemma-2-2b-it": ("google/gemma-2-2b", {}),
    "google/gemma-2-9b-it": ("google/gemma-2-9b", {}),
    "google/gemma-2-27b-it": ("google/gemma-2-27b", {}),
}


def known_ids() -> list[str]:
    """Every id ``lookup`` answers, base ids first."""
    return list(ARCHITECTURES) + list(_VARIANTS)


def lookup(model_id: str) -> dict | None:
    """A copy of the bundled config for a hub id (case-insensitive), or None.

    Case-insensitive because the hub itself resolves ids that way and users type them by hand.
    """
    wanted = model_id.strip().strip("/").lower()
    for key, cfg in ARCHITECTURES.items():
        if key.lower() == wanted:
            return dict(cfg)
    for key, (base, overrides) in _VARIANTS.items():
        if key.lower() == wanted:
            return {**ARCHITECTURES[base], **overrides}
    return None
