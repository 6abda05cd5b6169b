"""The estimate across architecture families, against transformers 5.24 and peft 0.21 themselves.

- LoRA trainable counts (all-linear and an explicit list, DoRA too) equal peft's on the meta device, for a
  small config of every family, mixture-of-experts included (peft maps all-linear onto the fused experts).
- Activation terms per family: the bytes autograd saves in one decoder layer (saved-tensor hooks on a small
  random bf16 model) against the per-layer formula; each ratio is printed (pytest -s shows the table).
- Parameter counts of the real-size bundled configs against the meta device are in test_estimate.py
  (test_param_counts_match_meta_device, every entry of engine/estimate/architectures.py).
"""
from __future__ import annotations

import warnings

import pytest

from engine.estimate import estimate
from engine.estimate.targets import experts_targeted, resolve_targets
from engine.estimate.vram import layer_activation_bytes

from .test_estimate import _build, _hf_config, _measure

BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=100, tie_word_embeddings=False)
# One small config per family, with that family's distinguishing switches on.
FAMILIES = {
    "llama": dict(head_dim=24),
    "mistral": dict(sliding_window=None),
    "qwen2": dict(),
    "qwen3": dict(head_dim=24),
    "gemma": dict(head_dim=24),
    "gemma2": dict(head_dim=24, query_pre_attn_scalar=24),
    "gemma3_text": dict(head_dim=24, query_pre_attn_scalar=24),
    "phi3": dict(pad_token_id=0),
    "olmo2": dict(),
    "cohere": dict(use_qk_norm=True, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "granite": dict(mlp_bias=True),
    "smollm3": dict(pad_token_id=0),
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=16,
                      mlp_only_layers=[0]),
    "deepseek_v2": dict(n_routed_experts=4, n_shared_experts=1, moe_intermediate_size=32, first_k_dense_replace=1,
                        q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12,
                        num_experts_per_tok=2, n_group=1, topk_group=1),
    "deepseek_v3": dict(n_routed_experts=4, n_shared_experts=2, moe_intermediate_size=32, first_k_dense_replace=1,
                        q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12,
                        num_experts_per_tok=2, n_group=1, topk_group=1),
    "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16),
}
LISTS = {"phi3": ["qkv_proj", "down_proj"], "deepseek_v2": ["kv_b_proj", "o_proj"],
         "deepseek_v3": ["q_b_proj", "kv_a_proj_with_mqa"], "mixtral": ["q_proj", "v_proj", "w1", "w3"]}


def tiny(family: str) -> dict:
    return {"model_type": family, **BASE, **FAMILIES[family]}


@pytest.fixture(scope="module")
def stack():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    return torch, transformers, peft


def _peft_trainable(stack, cfg: dict, targets, r: int = 4, use_dora: bool = False) -> int:
    torch, transformers, peft = stack
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(_hf_config(transformers, cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                                           target_modules=targets, use_dora=use_dora,
                                                           task_type="CAUSAL_LM"))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lora_trainable_counts_match_peft(stack, family):
    cfg = tiny(family)
    for targets in ("all-linear", LISTS.get(family, ["q_proj", "v_proj"])):
        want = _peft_trainable(stack, cfg, targets)
        got = estimate(cfg, method="lora", micro_batch=1, seq_len=8, lora_r=4, target_modules=targets)
        assert got.trainable_params == want, (family, targets, got.trainable_params, want)


@pytest.mark.parametrize("family", ["llama", "qwen3", "phi3", "olmo2"])
def test_dora_adds_peft_magnitude_vectors(stack, family):
    cfg = tiny(family)
    want = _peft_trainable(stack, cfg, "all-linear", use_dora=True)
    got = estimate(cfg, method="lora", micro_batch=1, seq_len=8, lora_r=4, use_dora=True).trainable_params
    assert got == want


def test_moe_targets_say_which_experts_are_trained():
    mixtral = tiny("mixtral")
    assert experts_targeted(mixtral, "all-linear") == "experts.down_proj, experts.gate_up_proj, router"
    assert experts_targeted(mixtral, ["q_proj", "v_proj"]) == ""
    assert experts_targeted(tiny("gpt_oss"), "all-linear") == ""   # peft has no expert mapping for gpt-oss
    assert experts_targeted(tiny("llama"), "all-linear") == ""
    with pytest.raises(ValueError, match="w1 and w3 are fused"):
        resolve_targets(mixtral, ["w1"])
    est = estimate(mixtral, method="qlora", micro_batch=1, seq_len=8)
    assert any("every one of the 4 experts" in n for n in est.notes)
    assert any("stay 16-bit under QLoRA" in n for n in est.notes)


def test_moe_all_linear_with_dropout_is_what_peft_refuses(stack):
    """The validator's rule (engine/profile/preflight.py) is peft's: dropout on expert adapters fails."""
    torch, transformers, peft = stack
    for family, refused in (("mixtral", True), ("qwen3_moe", True), ("gpt_oss", False)):
        cfg = tiny(family)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(_hf_config(transformers, cfg))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peft.get_peft_model(model, peft.LoraConfig(r=4, lora_dropout=0.05, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
            failed = False
        except ValueError as exc:
            failed = "dropout" in str(exc)
        assert failed == refused == bool(experts_targeted(cfg, "all-linear")), family


# Saved bytes of one decoder layer: family -> (method, allowed ratio band formula/measured). Within 0.1% where
# the formula follows the tensors one by one (Llama-like, Qwen3, OLMo-2, Gemma 3, Cohere, Granite, SmolLM3,
# Mixtral and Qwen3-MoE with LoRA on the experts); gpt-oss and DeepSeek's latent attention are approximations
# whose measured ratio is printed and bounded.
ACTIVATION_CASES = [
    ("llama", "lora", (1.0, 1.0)),
    ("qwen3", "lora", (0.97, 1.03)),
    ("qwen3", "full", (0.97, 1.03)),
    ("olmo2", "lora", (0.85, 1.15)),
    ("gemma3_text", "lora", (0.85, 1.15)),
    ("cohere", "lora", (0.97, 1.03)),
    ("granite", "lora", (0.95, 1.05)),
    ("smollm3", "lora", (0.95, 1.05)),
    ("mixtral", "lora", (0.97, 1.03)),
    ("qwen3_moe", "lora", (0.97, 1.03)),
    ("gpt_oss", "lora", (0.8, 1.2)),       # eager attention with sinks, clamped GLU experts: 0.87 measured
    ("deepseek_v3", "lora", (0.9, 1.1)),   # latent attention's q/kv paths summed like MHA: 0.95 measured
]


@pytest.mark.parametrize("family,method,band", ACTIVATION_CASES, ids=lambda v: str(v))
def test_activation_terms_per_family(stack, tmp_path, family, method, band):
    torch, transformers, _ = stack
    cfg = {**tiny(family), "hidden_size": 128, "intermediate_size": 352, "max_position_embeddings": 4096}
    if family == "qwen3_moe":
        cfg["mlp_only_layers"] = []
    model = _build(torch, transformers, tmp_path, cfg, method, attn="eager" if family == "gpt_oss" else "sdpa")
    layer1, _ = _measure(torch, model, B=2, T=128, vocab=cfg["vocab_size"], autocast=method != "full")
    kw = dict(method=method, micro_batch=2, seq_len=128, padding_free=True, autocast=method != "full")
    formula = layer_activation_bytes(cfg, **kw)
    ratio = formula / layer1
    print(f"\n{family:12s} {method:5s} formula {formula:>10,} measured {layer1:>10,} ratio {ratio:.3f}")
    lo, hi = band
    assert lo <= ratio <= hi, f"{family}: formula/measured = {ratio:.3f}"
