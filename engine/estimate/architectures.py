"""Bundled config.json excerpts for popular architectures.

Why: an estimate must work before anything is downloaded (no network to the hub is assumed). These are the
fields of the real config.json files that the parameter count and the activation estimate need, copied
from the published configs (tests/fixtures/configs/PROVENANCE.md says where each comes from;
tests/test_estimate.py checks every entry against the model instantiated on the meta device). Fields that do
not change the memory (token ids, dropout, rope scaling details) are left out; ``AutoConfig.for_model(**cfg)``
fills them with defaults, which is enough to count parameters.

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

_QWEN3 = {
    "model_type": "qwen3", "vocab_size": 151936, "head_dim": 128, "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000, "attention_bias": False, "hidden_act": "silu",
    "torch_dtype": "bfloat16",
}
_GEMMA3_TEXT = {
    "model_type": "gemma3_text", "head_dim": 256, "rms_norm_eps": 1e-06, "hidden_activation": "gelu_pytorch_tanh",
    "sliding_window": 1024, "query_pre_attn_scalar": 256, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}
_SIGLIP_896 = {
    "model_type": "siglip_vision_model", "hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
    "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False,
}


def _gemma3(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int,
            scalar: int) -> dict:
    """The multimodal Gemma 3 config: the text part under text_config, the SigLIP tower under vision_config."""
    text = {**_GEMMA3_TEXT, "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
            "query_pre_attn_scalar": scalar, "vocab_size": 262208, "max_position_embeddings": 131072}
    return {"model_type": "gemma3", "mm_tokens_per_image": 256, "text_config": text, "vision_config": _SIGLIP_896,
            "torch_dtype": "bfloat16"}


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
    # --- Llama 1 and 3.3 (3.3 70B has 3.1 70B's architecture) ---
    "huggyllama/llama-7b": {
        **_LLAMA2, "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-06,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
    "meta-llama/Llama-3.3-70B-Instruct": {
        **_LLAMA3, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
    },
    # --- Mistral Small 3 (24B), Mixtral (fused experts in transformers 5) ---
    "mistralai/Mistral-Small-24B-Base-2501": {
        "model_type": "mistral", "vocab_size": 131072, "hidden_size": 5120, "intermediate_size": 32768,
        "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 100000000.0,
        "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16",
    },
    "mistralai/Mixtral-8x7B-v0.1": {
        "model_type": "mixtral", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
        "num_experts_per_tok": 2, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
        "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16",
    },
    # --- Qwen3 (per-head q/k norms) and Qwen3-MoE ---
    "Qwen/Qwen3-0.6B": {**_QWEN3, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                        "num_attention_heads": 16, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "Qwen/Qwen3-1.7B": {**_QWEN3, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                        "num_attention_heads": 16, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "Qwen/Qwen3-4B": {**_QWEN3, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "Qwen/Qwen3-8B": {**_QWEN3, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "Qwen/Qwen3-14B": {**_QWEN3, "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 40,
                       "num_attention_heads": 40, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "Qwen/Qwen3-32B": {**_QWEN3, "hidden_size": 5120, "intermediate_size": 25600, "num_hidden_layers": 64,
                       "num_attention_heads": 64, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "Qwen/Qwen3-30B-A3B": {
        **_QWEN3, "model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
        "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "norm_topk_prob": True, "tie_word_embeddings": False,
    },
    "Qwen/Qwen3-235B-A22B": {
        **_QWEN3, "model_type": "qwen3_moe", "hidden_size": 4096, "intermediate_size": 12288,
        "moe_intermediate_size": 1536, "num_hidden_layers": 94, "num_attention_heads": 64, "num_key_value_heads": 4,
        "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "norm_topk_prob": True, "tie_word_embeddings": False,
    },
    # --- DeepSeek-R1 distills (Qwen2.5-Math / Qwen2.5 and Llama 3 architectures) ---
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": {
        **_QWEN25, "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": {
        **_QWEN25, "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": {
        **_LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False,
    },
    # --- DeepSeek-V2 / V3 (multi-head latent attention, shared + routed experts) ---
    "deepseek-ai/DeepSeek-V2-Lite": {
        "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
        "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
        "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": None,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_group": 1, "topk_group": 1,
        "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "deepseek-ai/DeepSeek-V3": {
        "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
        "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
        "num_key_value_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
        "first_k_dense_replace": 3, "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": 1536,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_group": 8, "topk_group": 4,
        "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    # --- Gemma 1 and Gemma 3 (1B: text only; 4B and larger: the multimodal wrapper) ---
    "google/gemma-7b": {
        "model_type": "gemma", "vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-06, "tie_word_embeddings": True,
        "hidden_act": "gelu", "torch_dtype": "bfloat16",
    },
    "google/gemma-3-1b-pt": {
        **_GEMMA3_TEXT, "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912,
        "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "sliding_window": 512,
        "max_position_embeddings": 32768,
    },
    "google/gemma-3-4b-pt": _gemma3(2560, 10240, 34, 8, 4, 256, 256),
    "google/gemma-3-12b-pt": _gemma3(3840, 15360, 48, 16, 8, 256, 256),
    "google/gemma-3-27b-pt": _gemma3(5376, 21504, 62, 32, 16, 128, 168),
    # --- Phi-3.5 and Phi-4 (phi3 architecture: fused qkv_proj and gate_up_proj) ---
    "microsoft/Phi-4-mini-instruct": {
        "model_type": "phi3", "vocab_size": 200064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 24, "num_key_value_heads": 8,
        "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "partial_rotary_factor": 0.75,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu",
        "pad_token_id": 199999, "torch_dtype": "bfloat16",
    },
    "microsoft/phi-4": {
        "model_type": "phi3", "vocab_size": 100352, "hidden_size": 5120, "intermediate_size": 17920,
        "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 10,
        "max_position_embeddings": 16384, "original_max_position_embeddings": 16384, "rms_norm_eps": 1e-05,
        "rope_theta": 250000, "tie_word_embeddings": False, "hidden_act": "silu", "pad_token_id": 100349,
        "torch_dtype": "bfloat16",
    },
    # --- OLMo-2 (full-width q/k norms, norms after attention and MLP) ---
    "allenai/OLMo-2-1124-7B": {
        "model_type": "olmo2", "vocab_size": 100352, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 500000, "attention_bias": False,
        "tie_word_embeddings": False, "hidden_act": "silu", "pad_token_id": 100277, "torch_dtype": "float32",
    },
    "allenai/OLMo-2-1124-13B": {
        "model_type": "olmo2", "vocab_size": 100352, "hidden_size": 5120, "intermediate_size": 13824,
        "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 500000, "attention_bias": False,
        "tie_word_embeddings": False, "hidden_act": "silu", "pad_token_id": 100277, "torch_dtype": "float32",
    },
    # --- Cohere Command R (one LayerNorm a layer, parallel attention and MLP, tied) ---
    "CohereForAI/c4ai-command-r-v01": {
        "model_type": "cohere", "vocab_size": 256000, "hidden_size": 8192, "intermediate_size": 22528,
        "num_hidden_layers": 40, "num_attention_heads": 64, "num_key_value_heads": 64,
        "max_position_embeddings": 8192, "layer_norm_eps": 1e-05, "logit_scale": 0.0625, "rope_theta": 8000000.0,
        "use_qk_norm": False, "tie_word_embeddings": True, "hidden_act": "silu", "pad_token_id": 0,
        "bos_token_id": 5, "eos_token_id": 255001, "torch_dtype": "float16",
    },
    # --- Granite 3.1 ---
    "ibm-granite/granite-3.1-8b-base": {
        "model_type": "granite", "vocab_size": 49155, "hidden_size": 4096, "intermediate_size": 12800,
        "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 10000000.0,
        "attention_bias": False, "mlp_bias": False, "embedding_multiplier": 12.0, "attention_multiplier": 0.0078125,
        "residual_multiplier": 0.22, "logits_scaling": 16.0, "tie_word_embeddings": True, "hidden_act": "silu",
        "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "bfloat16",
    },
    # --- SmolLM2 (Llama architecture) and SmolLM3 ---
    "HuggingFaceTB/SmolLM2-1.7B": {
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 32,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 130000, "tie_word_embeddings": True,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    },
    "HuggingFaceTB/SmolLM3-3B": {
        "model_type": "smollm3", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 11008,
        "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 4,
        "max_position_embeddings": 65536, "rms_norm_eps": 1e-06, "rope_theta": 5000000.0,
        "no_rope_layer_interval": 4, "tie_word_embeddings": True, "hidden_act": "silu", "pad_token_id": 128004,
        "torch_dtype": "bfloat16",
    },
    # --- gpt-oss (attention sinks, biased fused experts; trained in bf16 after dequantizing MXFP4) ---
    "openai/gpt-oss-20b": {
        "model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
        "num_hidden_layers": 24, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
        "num_local_experts": 32, "num_experts_per_tok": 4, "sliding_window": 128,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "openai/gpt-oss-120b": {
        "model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
        "num_hidden_layers": 36, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
        "num_local_experts": 128, "num_experts_per_tok": 4, "sliding_window": 128,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
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
    "Qwen/Qwen3-0.6B-Base": ("Qwen/Qwen3-0.6B", {}),
    "Qwen/Qwen3-8B-Base": ("Qwen/Qwen3-8B", {}),
    "Qwen/Qwen3-14B-Base": ("Qwen/Qwen3-14B", {}),
    "google/gemma-3-1b-it": ("google/gemma-3-1b-pt", {}),
    "google/gemma-3-4b-it": ("google/gemma-3-4b-pt", {}),
    "google/gemma-3-12b-it": ("google/gemma-3-12b-pt", {}),
    "google/gemma-3-27b-it": ("google/gemma-3-27b-pt", {}),
    "mistralai/Mistral-Small-24B-Instruct-2501": ("mistralai/Mistral-Small-24B-Base-2501", {}),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("mistralai/Mixtral-8x7B-v0.1", {}),
    "HuggingFaceTB/SmolLM3-3B-Base": ("HuggingFaceTB/SmolLM3-3B", {}),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": ("HuggingFaceTB/SmolLM2-1.7B", {}),
    "ibm-granite/granite-3.1-8b-instruct": ("ibm-granite/granite-3.1-8b-base", {}),
    "allenai/OLMo-2-1124-7B-Instruct": ("allenai/OLMo-2-1124-7B", {}),
    "allenai/OLMo-2-1124-13B-Instruct": ("allenai/OLMo-2-1124-13B", {}),
    "deepseek-ai/DeepSeek-V2-Lite-Chat": ("deepseek-ai/DeepSeek-V2-Lite", {}),
    "deepseek-ai/DeepSeek-R1": ("deepseek-ai/DeepSeek-V3", {}),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": ("Qwen/Qwen2.5-14B", {}),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": ("Qwen/Qwen2.5-32B", {}),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": ("meta-llama/Llama-3.3-70B-Instruct", {}),
    "meta-llama/Llama-3.3-70B": ("meta-llama/Llama-3.3-70B-Instruct", {}),
    "microsoft/Phi-3.5-mini-instruct": ("microsoft/Phi-3-mini-4k-instruct", {"max_position_embeddings": 131072}),
    "google/gemma-7b-it": ("google/gemma-7b", {}),
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
