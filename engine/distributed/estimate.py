"""Peak memory per GPU for each strategy, from the single-GPU estimate's terms (engine/estimate/vram.py).

The single-GPU `Estimate` says what one process holds at the peak of a step: weights, trainable state
(adapters, or full gradients + optimizer), activations, logits, CUDA overhead. Each strategy moves those
terms differently:

- ddp: every GPU holds a full replica, plus one flat copy of the trainable gradients (DDP's gradient
  buckets; tunetop's collective backoff averages them in one flat buffer per dtype too, so one copy
  either way). Activations and logits are per rank's own micro-batch: unchanged.
- fsdp (FSDP2, full_shard): weights and trainable state are split over the world size. During a step a
  rank holds, unsharded, the root unit (embeddings, final norm, lm_head: transformers wraps each decoder
  layer, and what is left belongs to the root, which FSDP2 does not reshard after forward) and two decoder
  layers: the one computing and the next one being prefetched. Full fine-tuning also holds one layer's
  unsharded gradients before their reduce-scatter. Activations and logits are unchanged.
- model_parallel: one process, the layers split over the GPUs (embeddings on the first, final norm and
  lm_head on the last, as accelerate's device map places them). Each GPU holds its layers' weights,
  trainable state and activations, and its own CUDA context; the last one also the logits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..estimate import vram
from ..estimate.params import count_params, shape_of


@dataclass(frozen=True)
class Placement:
    """Peak bytes per GPU under one strategy."""
    strategy: str
    world_size: int
    per_gpu: tuple[int, ...]               # one entry per GPU (ddp/fsdp: all equal, listed once)
    terms: tuple[tuple[str, int], ...]     # the fullest GPU's terms, summing to its peak
    layers_per_gpu: tuple[int, ...] = ()   # model_parallel: decoder layers on each GPU
    notes: tuple[str, ...] = field(default=())

    @property
    def peak(self) -> int:
        return max(self.per_gpu)


def layer_weight_bytes(config: dict, method: str, precision: str, double_quant: bool = True) -> int:
    """One decoder layer's weights as loaded (NF4 Linears for QLoRA, else the load dtype), norms and MoE
    experts included: the whole model's weights without the root's, per layer."""
    s = shape_of(config)
    base = vram.weight_bytes(config, method, precision, double_quant)
    return (base - root_weight_bytes(config, precision)) // max(1, s.layers)


def root_weight_bytes(config: dict, precision: str) -> int:
    """Embeddings + lm_head (when untied) + the final norm: never quantized."""
    p = 4 if precision == "fp32" else 2
    counts = count_params(config)
    return (counts.embeddings + counts.lm_head + shape_of(config).hidden) * p


def trainable_grad_bytes(est: vram.Estimate, precision: str) -> int:
    """One copy of the trainable gradients: adapters in their dtype (fp32 for LoRA, bf16 as trl casts QLoRA's),
    full fine-tuning in the weights' dtype."""
    if est.method == "full":
        return est.trainable_params * (4 if precision == "fp32" else 2)
    return est.trainable_params * (2 if est.method == "qlora" else 4)


def per_gpu(est: vram.Estimate, config: dict, strategy: str, world_size: int, *, precision: str = "bf16",
            double_quant: bool = True, layers_per_gpu: list[int] | None = None) -> Placement:
    """Peak bytes per GPU for the strategy ("single", "ddp", "fsdp" or "model_parallel" over world_size GPUs).
    layers_per_gpu: model_parallel's split when known (accelerate's map, engine/distributed/device_map.py);
    otherwise an even split."""
    if strategy == "single" or world_size <= 1 and strategy != "model_parallel":
        return Placement("single", 1, (est.total,), tuple(est.breakdown()))
    if strategy == "ddp":
        grads = trainable_grad_bytes(est, precision)
        terms = (*est.breakdown(), ("DDP gradient buckets", grads))
        return Placement("ddp", world_size, (est.total + grads,), terms)
    if strategy == "fsdp":
        return _fsdp(est, config, world_size, precision, double_quant)
    if strategy == "model_parallel":
        return _model_parallel(est, config, world_size, precision, double_quant, layers_per_gpu)
    raise ValueError(f"unknown strategy {strategy!r}")


def _fsdp(est, config, world, precision, double_quant) -> Placement:
    base = vram.weight_bytes(config, est.method, precision, double_quant)
    dequant = est.weights - base                 # QLoRA: one dequantized weight for its matmul (not sharded)
    layer = layer_weight_bytes(config, est.method, precision, double_quant)
    root = root_weight_bytes(config, precision)
    # The sharded parts: every weight and all trainable state, 1/world each.
    sharded_weights = -(-base // world)
    sharded_state = -(-est.adapters // world)
    gathered = root + 2 * layer - -(-(root + 2 * layer) // world)   # unsharded minus the rank's own shard
    if est.method == "full":
        gathered += layer                        # one layer's unsharded gradients before reduce-scatter
    terms = (("weights (sharded)", sharded_weights), ("all-gathered: root + 2 layers", gathered),
             ("dequantized weight" if est.method == "qlora" else "", dequant),
             ("adapters (sharded)" if est.method != "full" else "grads + optimizer (sharded)", sharded_state),
             ("activations", est.activations), ("logits", est.logits), ("CUDA overhead", est.cuda_overhead))
    terms = tuple(t for t in terms if t[0] or t[1])
    return Placement("fsdp", world, (sum(b for _, b in terms),), terms)


def _model_parallel(est, config, n_gpus, precision, double_quant, split=None) -> Placement:
    s = shape_of(config)
    counts = count_params(config)
    p = 4 if precision == "fp32" else 2
    layer = layer_weight_bytes(config, est.method, precision, double_quant)
    base = vram.weight_bytes(config, est.method, precision, double_quant)
    dequant = est.weights - base
    split = list(split) if split else balanced_layers(s.layers, n_gpus)
    embed = counts.embeddings * p
    head = (counts.lm_head + s.hidden) * p      # and the final norm
    per_layer_state = est.adapters / s.layers
    per_layer_act = est.activations / s.layers
    context = vram.CUDA_CONTEXT_BYTES
    per_card, fullest_terms = [], ()
    for i, n in enumerate(split):
        w = n * layer + (embed if i == 0 else 0) + (head if i == n_gpus - 1 else 0) + (dequant if n else 0)
        terms = [("weights", w), ("adapters" if est.method != "full" else "grads + optimizer",
                                  int(n * per_layer_state)), ("activations", int(n * per_layer_act))]
        if i == n_gpus - 1:
            terms.append(("logits", est.logits))
            terms.append(("CUDA overhead", est.cuda_overhead))
        else:
            terms.append(("CUDA overhead", context + int(vram.FRAGMENTATION * n * per_layer_act)))
        total = sum(b for _, b in terms)
        per_card.append(total)
        if total == max(per_card):
            fullest_terms = tuple(terms)
    return Placement("model_parallel", n_gpus, tuple(per_card), fullest_terms, tuple(split),
                     ("one process: the GPUs take turns (no speed-up), the memory adds up",))


def balanced_layers(layers: int, n_gpus: int) -> list[int]:
    """Decoder layers per GPU, as even as possible; the first GPU (which also holds the embeddings) takes
    fewer when they do not divide evenly, the last (lm_head, logits) too."""
    base, extra = divmod(layers, n_gpus)
    counts = [base] * n_gpus
    # Give the remainder to the middle GPUs first: the ends carry the embeddings and the head.
    order = list(range(1, n_gpus - 1)) + [n_gpus - 1, 0] if n_gpus > 2 else list(range(n_gpus))[::-1]
    for i in order[:extra]:
        counts[i] += 1
    return counts


def fits_per_gpu(profile, strategy: str, world_size: int, gpu_bytes: int) -> bool | None:
    """Does the profile's estimate per GPU fit gpu_bytes under the strategy? None: no estimate for this model."""
    try:
        from ..estimate.config_source import resolve as resolve_config
        from ..plan.profile_estimate import estimate_kwargs, settings_of
        model = resolve_config(profile.model.name_or_path, profile.model.revision)
        if model.config is None:
            return None
        kwargs = estimate_kwargs(settings_of(profile))
        est = vram.estimate(model.config, **kwargs)
        placed = per_gpu(est, model.config, strategy, world_size, precision=kwargs["precision"],
                         double_quant=kwargs["double_quant"])
    except (ValueError, KeyError):
        return None
    return vram.verdict(placed.peak, gpu_bytes) != "does not fit"
