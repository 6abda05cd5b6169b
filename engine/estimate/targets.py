"""Which modules LoRA wraps, as peft 0.21 decides it, and how many adapter parameters that makes.

Dense models: a target name matches every Linear whose name ends with it ("gate_proj" matches a DeepSeek
layer's mlp.gate_proj and mlp.shared_experts.gate_proj); "all-linear" is every decoder Linear (not lm_head).

Mixture-of-experts models in transformers 5 keep their experts as fused 3-D parameters. peft maps the
transformers-4 names onto them (peft/utils/transformers_weight_conversion.py): for Mixtral w1+w3 -> the
experts' gate_up_proj, w2 -> down_proj, gate -> the router's weight; for the Qwen2-MoE family (Qwen3-MoE,
DeepSeek-V2/V3) gate_proj+up_proj -> gate_up_proj, down_proj -> down_proj, gate -> router. Those names then no
longer reach the dense Linears of the same name. The fused gate_up_proj gets rank 2r (one r per fused
projection), and every expert gets its own adapter: r x experts rows of lora_A. "all-linear" includes them
all, and peft's ParamWrapper refuses lora_dropout != 0 on them. gpt-oss has no mapping: "all-linear" there is
the attention only. tests/test_estimate_archs.py checks the counts against peft on the meta device.
"""
from __future__ import annotations

from .activations import rank_of
from .params import Layer, LinearModule, shape_of

ROUTER = "router"  # the internal name of a router's weight as a LoRA target

# model_type -> {transformers-4 name: internal target}, from peft's _MOE_TARGET_MODULE_MAPPING.
_MIXTRAL = {"w1": "experts.gate_up_proj", "w3": "experts.gate_up_proj", "w2": "experts.down_proj", "gate": ROUTER}
_QWEN_MOE = {"gate_proj": "experts.gate_up_proj", "up_proj": "experts.gate_up_proj",
             "down_proj": "experts.down_proj", "gate": ROUTER}
PEFT_MOE_NAMES = {"mixtral": _MIXTRAL, "qwen3_moe": _QWEN_MOE, "deepseek_v2": _QWEN_MOE, "deepseek_v3": _QWEN_MOE}
# Fused projections: every one of these names must be targeted together (peft refuses half of them).
_FUSED = {"mixtral": ("w1", "w3"), "qwen3_moe": ("gate_proj", "up_proj"), "deepseek_v2": ("gate_proj", "up_proj"),
          "deepseek_v3": ("gate_proj", "up_proj")}


def is_moe(config: dict) -> bool:
    return any(spec.moe for spec in shape_of(config).layer_specs)


def _internal(m: LinearModule) -> str:
    return "experts." + m.name if m.experts > 1 else m.name


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def resolve_targets(config: dict, target_modules: str | list[str] | tuple[str, ...]) -> frozenset[str]:
    """Internal names of the modules LoRA wraps ("q_proj", "shared_experts.gate_proj", "experts.down_proj",
    "router"). Raises ValueError naming what does not exist in this architecture."""
    s = shape_of(config)
    mt = s.model_type
    dense = [m for spec in s.layer_specs for m in spec.modules if m.experts == 1]
    moe_names = PEFT_MOE_NAMES.get(mt, {}) if s.experts else {}
    linear_names = {m.name for m in dense}
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            chosen = {n for n in linear_names if not any(_matches(n, old) for old in moe_names)}
            return frozenset(chosen | set(moe_names.values()))
        target_modules = [target_modules]
    if not target_modules:
        raise ValueError("target_modules is empty: LoRA needs at least one module")
    chosen = set()
    unknown = []
    for t in target_modules:
        if t in moe_names:
            chosen.add(moe_names[t])
            continue
        hit = {n for n in linear_names if _matches(n, t)}
        if not hit:
            unknown.append(t)
        chosen |= hit
    if unknown:
        names = sorted({n.rpartition(".")[-1] for n in linear_names} | set(moe_names))
        raise ValueError(
            f"target module(s) {', '.join(map(repr, unknown))} not in this architecture "
            f"(its Linear layers: {', '.join(names)}; or 'all-linear')"
        )
    fused = _FUSED.get(mt) if moe_names else None
    if fused and 0 < sum(f in target_modules for f in fused) < len(fused):
        raise ValueError(f"target modules {' and '.join(fused)} are fused into one expert parameter in "
                         f"transformers 5: list both or neither")
    return frozenset(chosen)


def experts_targeted(config: dict, target_modules) -> str:
    """Which expert parameters a target_modules choice puts LoRA on ("" when none): the case in which peft
    refuses lora_dropout != 0 (its ParamWrapper has no dropout)."""
    if not is_moe(config):
        return ""
    chosen = resolve_targets(config, target_modules)
    hit = sorted(t for t in chosen if t.startswith("experts.") or t == ROUTER)
    return ", ".join(hit)


def adapted(spec: Layer, targets: frozenset[str]) -> list[LinearModule]:
    return [m for m in spec.modules if _internal(m) in targets]


def lora_matrices(spec: Layer, targets: frozenset[str], r: int, use_dora: bool = False) -> list[tuple[int, int]]:
    """(rows, cols) of every trainable tensor LoRA adds to one layer: lora_A, lora_B (and DoRA's magnitude)."""
    out: list[tuple[int, int]] = []
    for m in adapted(spec, targets):
        rows = rank_of(m, r) * m.experts
        out += [(rows, m.d_in), (m.d_out, rows)]
        if use_dora:
            out.append((m.d_out, 1))
    if ROUTER in targets and spec.router:
        d_in, experts = spec.router
        out += [(r, d_in), (experts, r)]
    return out


def lora_params(config: dict, targets: frozenset[str], r: int, use_dora: bool = False) -> int:
    return sum(spec.count * sum(a * b for a, b in lora_matrices(spec, targets, r, use_dora))
               for spec in shape_of(config).layer_specs)


def moe_target_note(config: dict, targets: frozenset[str]) -> str | None:
    """Which experts' LoRA is trained, said plainly for a mixture-of-experts model."""
    s = shape_of(config)
    if not s.experts:
        return None
    if any(t.startswith("experts.") for t in targets):
        return (f"LoRA on every one of the {s.experts} experts of each MoE layer (each token trains its top "
                f"{s.top_k}); their adapters, gradients and optimizer state are all resident")
    return "LoRA on attention (and dense) layers only: the experts stay frozen"
