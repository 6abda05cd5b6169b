"""Text for `tunetop estimate PROFILE --gpus N --strategy S` and `tunetop fit --gpu CARD --count N`: the peak
per GPU of a layout (engine/distributed/estimate.py over the single-GPU estimate's terms)."""
from __future__ import annotations

from dataclasses import replace

from ..estimate import vram
from ..estimate.params import count_params
from ..profile.distributed_rules import STRATEGIES
from .estimate import Placement, per_gpu


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def placements(est: vram.Estimate, config: dict, n_gpus: int, strategy: str | None, *, precision: str,
               double_quant: bool) -> list[Placement]:
    """The strategies asked for ("auto"/None: all three) over n_gpus."""
    chosen = STRATEGIES if strategy in (None, "auto") else (strategy,)
    return [per_gpu(est, config, s, n_gpus, precision=precision, double_quant=double_quant) for s in chosen]


def layout_text(places: list[Placement], card_name: str, card_bytes: int) -> str:
    lines = [f"per GPU over {places[0].world_size} x {card_name} ({gib(card_bytes)} each):"]
    for p in places:
        verdict = vram.verdict(p.peak, card_bytes)
        lines.append(f"  {p.strategy:<15} {gib(p.peak):>10}  {verdict}"
                     + (f"  (GPUs: {', '.join(gib(b) for b in p.per_gpu)})" if len(p.per_gpu) > 1 else ""))
        for label, size in p.terms:
            lines.append(f"      {label:<32} {gib(size):>10}")
        if p.layers_per_gpu:
            where = ", ".join(f"GPU {i}: layers {sum(p.layers_per_gpu[:i])}-{sum(p.layers_per_gpu[:i + 1]) - 1}"
                              + (" + embeddings" if i == 0 else "")
                              + (" + norm, lm_head" if i == len(p.layers_per_gpu) - 1 else "")
                              for i in range(len(p.layers_per_gpu)))
            lines.append(f"      layers per GPU: {where}")
        for note in p.notes:
            lines.append(f"      note: {note}")
    return "\n".join(lines)


def profile_layout_text(profile, n_gpus: int, strategy: str | None, card_name: str, card_bytes: int) -> str:
    """`tunetop estimate PROFILE --gpus N [--strategy S]`; raises ValueError when there is no estimate."""
    from ..estimate.config_source import resolve as resolve_config
    from ..plan.profile_estimate import estimate_kwargs, settings_of
    model = resolve_config(profile.model.name_or_path, profile.model.revision)
    if model.config is None:
        raise ValueError(model.problem)
    kwargs = estimate_kwargs(settings_of(profile))
    est = vram.estimate(model.config, **kwargs)
    if strategy != "model_parallel":
        return layout_text(placements(est, model.config, n_gpus, strategy, precision=kwargs["precision"],
                                      double_quant=kwargs["double_quant"]), card_name, card_bytes)
    # Asked for by name: worth the seconds of a meta-device model, whose map then sets the split.
    found = meta_map(model.config, est, n_gpus, card_bytes)
    split = [b - a + 1 for a, b in found["layers"]] if found and len(found["layers"]) == n_gpus else None
    placed = per_gpu(est, model.config, "model_parallel", n_gpus, precision=kwargs["precision"],
                     double_quant=kwargs["double_quant"], layers_per_gpu=split)
    return layout_text([placed], card_name, card_bytes) + "\n" + meta_map_text(found, n_gpus)


def meta_map(config: dict, est: vram.Estimate, n_gpus: int, card_bytes: int) -> dict | None:
    """accelerate's device map on the meta model, with each GPU's budget for weights: 90% of the card less
    its share of the trainable state and activations and its CUDA context (the last GPU also the logits)."""
    from .device_map import infer_in_subprocess
    share = (est.adapters + est.activations) // n_gpus
    budgets = [int(0.9 * card_bytes) - share - vram.CUDA_CONTEXT_BYTES - (est.logits if i == n_gpus - 1 else 0)
               for i in range(n_gpus)]
    return infer_in_subprocess(config, est.method, budgets)


def meta_map_text(found: dict | None, n_gpus: int) -> str:
    if not found or len(found["layers"]) == 0:
        return "      device map (accelerate, meta model): not available (transformers could not build this model)"
    where = [f"GPU {i}: layers {a}-{b}" for i, (a, b) in enumerate(found["layers"])]
    others = {}
    for name, device in found["map"].items():
        if ".layers." not in f".{name}.":
            others.setdefault(device, []).append(name.rsplit(".", 1)[-1])
    where = [w + (" + " + ", ".join(others.get(i, [])) if others.get(i) else "") for i, w in enumerate(where)]
    spill = [d for d in others if not isinstance(d, int)]
    text = "      device map (accelerate, meta model): " + "; ".join(where)
    if spill or len(found["layers"]) < n_gpus and any(not isinstance(d, int) for d in found["map"].values()):
        text += "  (some modules do not fit the GPUs: " + ", ".join(map(str, spill)) + ")"
    return text


def fit_count_text(card_name: str, card_bytes: int, count: int, seq_len: int = 2048, micro_batch: int = 1) -> str:
    """`tunetop fit --gpu CARD --count N`: the largest model of the pool that fits per method and strategy."""
    from ..plan.capacity import default_settings, model_pool
    from ..plan.profile_estimate import estimate_kwargs
    pool, _cached = model_pool()
    by_size = sorted(pool.items(), key=lambda kv: -count_params(kv[1]).total)
    lines = [f"on {count} x {card_name} ({gib(card_bytes)} each), seq {seq_len}, micro-batch {micro_batch}, "
             "the largest model per GPU that fits:"]
    lines.append(f"  {'method':<7} {'strategy':<15} {'model':<40} {'per GPU':>10}")
    for method in vram.METHODS:
        kwargs = estimate_kwargs(replace(default_settings(seq_len, micro_batch), method=method))
        if method != "full":
            kwargs["optimizer"] = "adamw_torch"   # FSDP cannot shard bitsandbytes' 8-bit state: compare alike
        for strategy in STRATEGIES:
            best = None
            for model_id, cfg in by_size:
                try:
                    est = vram.estimate(cfg, **kwargs)
                    placed = per_gpu(est, cfg, strategy, count, precision=kwargs["precision"],
                                     double_quant=kwargs["double_quant"])
                except (ValueError, KeyError):
                    continue
                if vram.verdict(placed.peak, card_bytes) == "fits":
                    best = (model_id, placed.peak)
                    break
            name, size = best if best else ("nothing in the table", None)
            lines.append(f"  {method:<7} {strategy:<15} {name:<40} {gib(size) if size else '-':>10}")
    lines.append("  (ddp: a full copy per GPU, faster; fsdp: sharded; model_parallel: one process, the GPUs "
                 "take turns; AdamW 32-bit for every strategy so they compare alike)")
    return "\n".join(lines)
