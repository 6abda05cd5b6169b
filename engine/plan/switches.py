"""Every profile field, and what it does to the memory estimate: the one table of it.

SWITCHES: the fields the engine honours that change memory, each with the estimate term it moves (and a
value that moves it, which tests/test_estimate_switches.py flips to check the estimate really changes).
NOT_MEMORY: every other field, with why it does not change the peak of a step. A test asserts that every
field of engine/profile/schema.py is in exactly one of the two, so a new field cannot be forgotten.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Switch(NamedTuple):
    term: str  # the estimate term(s) it moves
    flip: Any  # a value that changes the estimate of the demo-like test profile (None: no change expected)


SWITCHES: dict[str, Switch] = {
    "model.name_or_path": Switch("every term: the architecture (config.json)", "meta-llama/Llama-3.2-1B"),
    "model.revision": Switch("every term: which config.json of a cached hub model", None),
    "method.type": Switch("weights (NF4 / 16-bit), adapters or full gradients, optimizer state, activations",
                          "full"),
    "method.lora_r": Switch("adapters, optimizer state, activations (lora_A outputs)", 64),
    "method.target_modules": Switch("adapters, optimizer state, activations of adapted layers",
                                    ["q_proj", "v_proj"]),
    "method.lora_dropout": Switch("activations: a dropout mask (1 byte an element on CUDA) and a copy of each "
                                  "adapted input", 0.0),
    "method.use_dora": Switch("adapters (magnitude vectors), activations (base and adapter outputs kept)", True),
    "method.use_rslora": Switch("none: rsLoRA changes only the scaling factor alpha / sqrt(r)", None),
    "method.quant_type": Switch("none: fp4 and nf4 pack the same 4 bits and quant state", None),
    "method.double_quant": Switch("weights: quant-state bytes (about 0.37 bit a parameter)", False),
    "method.compute_dtype": Switch("activations: dtype of the 4-bit layers' matmuls (fp32 doubles them)", "fp32"),
    "training.micro_batch": Switch("activations, logits (tokens of one forward); auto: estimated at 1", 8),
    "training.max_seq_len": Switch("activations, logits (tokens of one forward)", 4096),
    "training.packing": Switch("activations: no attention mask (grouped KV heads, no B x T mask a layer)", True),
    "training.gradient_checkpointing": Switch("activations: only each layer's input plus one recomputed layer",
                                              False),
    "training.optimizer": Switch("optimizer state (8-bit: 2 bytes a parameter; paged: may wait in host memory)",
                                 "adamw_torch"),
    "training.precision": Switch("weights, grads, optimizer state (fp16 full fine-tuning keeps fp32 master "
                                 "weights), activations (fp32: no autocast); auto resolved per GPU", "fp32"),
    "training.allow_shorter_seq_len": Switch("none before a backoff: the estimate is for max_seq_len", None),
    "training.grad_accum": Switch("none: gradients are counted as alive already; the effective batch only", None),
    "training.effective_batch": Switch("none: micro_batch auto is estimated at 1 row a pass", None),
    # Several GPUs: the estimate is per GPU of one process today; strategy and world size terms (DDP buckets,
    # FSDP shards) come with issue 13 (engine.plan.check_profile takes a layout then).
    "distributed.gpus": Switch("per-GPU layout (not modelled yet: the estimate is for one GPU)", None),
    "distributed.strategy": Switch("per-GPU layout (not modelled yet: the estimate is for one GPU)", None),
    "distributed.processes": Switch("per-GPU layout (not modelled yet: the estimate is for one GPU)", None),
}

NOT_MEMORY: dict[str, str] = {
    "model.trust_remote_code": "whether the repository's own code may run",
    "data.path": "which rows; their length is capped by max_seq_len, which is what the estimate uses",
    "data.format": "how rows are read",
    "data.split": "which rows",
    "data.eval_split": "which rows; evaluation (forward only) needs less than a training step",
    "data.eval_fraction": "which rows; evaluation (forward only) needs less than a training step",
    "data.max_samples": "how many rows",
    "data.seed": "row order",
    "data.columns": "how rows are read",
    "data.max_bad_fraction": "which rows are accepted",
    "data.reasoning": "what the rows contain; their length is capped by max_seq_len",
    "method.lora_alpha": "a scaling factor",
    "training.epochs": "how long",
    "training.max_steps": "how long",
    "training.grow_back_after": "backoff policy after an out-of-memory error",
    "training.learning_rate": "arithmetic of the update",
    "training.scheduler": "arithmetic of the update",
    "training.warmup_ratio": "arithmetic of the update",
    "training.weight_decay": "arithmetic of the update (no extra state)",
    "training.max_grad_norm": "clipping reuses the gradients",
    "training.completion_only_loss": "which labels count; the logits are computed for every token",
    "training.seed": "initialisation and order",
    "training.logging_steps": "how often events are written",
    "training.eval_steps": "when evaluation runs",
    "training.save_steps": "when checkpoints are written (host memory and disk)",
    "training.save_total_limit": "disk",
    "training.on_nan": "what happens after a NaN loss",
    "output.runs_root": "where files go",
    "output.merge": "after training, on the host",
    "distributed.nnodes": "machines; the per-GPU memory follows gpus and strategy",
    "distributed.node_rank": "which machine",
    "distributed.rdzv_endpoint": "where the machines meet",
    "notify.enabled": "notifications",
    "notify.on": "notifications",
    "notify.command": "notifications",
    "notify.eval_rising": "notifications",
}
