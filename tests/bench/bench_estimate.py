"""Our VRAM estimate beside published measurements and the rule-of-thumb table (DESIGN.md).

Run: python tests/bench/bench_estimate.py   (no torch needed; prints tables, asserts nothing)

Published peaks are allocator peaks (torch.cuda.max_memory_allocated or the like): they leave out the CUDA
context and fragmentation. So the ratio compares them with our total minus the CUDA-overhead term; the
total with it is shown beside. Each row estimates the published setup as closely as estimate()'s options
allow; what still differs is said in the notes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.estimate import RULES_OF_THUMB, estimate, lookup  # noqa: E402

GB, GiB = 1e9, 1024**3

LLAMA2_7B = lookup("meta-llama/Llama-2-7b-hf")
LLAMA31_8B = lookup("meta-llama/Llama-3.1-8B")

# LitGPT resource tables (tutorials/resource-tables.md, commit 8641822, A100 40GB, "Max GPU RAM"):
# finetune/lora.py, precision bf16-true (no autocast, adapters in bf16), LoRA r=8 on q and v, dropout 0.05,
# no checkpointing, Alpaca padded to its longest sample: 1304 tokens with the Llama 2 tokenizer. LitGPT's
# own model and chunked cross-entropy differ from HF's; our "full" loss (all logits) is the closer of ours.
# Its NF4 rows sit about 0.35 bytes a parameter above ours (2.8 GB at 7B, 4.4 GB at 13B) while its bf16
# rows match within 5%: the gap is in LitGPT 2023 / bitsandbytes 0.41's 4-bit path, not in a term shared
# with the bf16 run; our terms do not explain it (a load-time or dequantization buffer is a guess).
LITGPT = dict(micro_batch=1, seq_len=1304, lora_r=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.05,
              autocast=False, adapter_dtype="bf16", gradient_checkpointing=False, loss="full", padding_free=True,
              upcast_frozen_fp32=False)
# torchtune llama3_1/8B_(q)lora_single_device: r=8 on q, v, output (o_proj) and the MLP, pure bf16,
# activation checkpointing, batch 2 packed to 2048 (no padding mask), chunked cross-entropy (its bf16 logits
# are all materialized, then upcast a chunk at a time: between our "fused" and "full"; "fused" used here).
TORCHTUNE = dict(micro_batch=2, seq_len=2048, lora_r=8,
                 target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                 autocast=False, adapter_dtype="bf16", gradient_checkpointing=True, loss="fused", padding_free=True,
                 upcast_frozen_fp32=False)

LLAMA2_13B = lookup("meta-llama/Llama-2-13b-hf")
PUBLISHED = [
    ("LitGPT Llama-2-7B LoRA bf16, A100", LLAMA2_7B, "lora", LITGPT, 21.30, GB, "LitGPT model, not HF"),
    ("LitGPT Llama-2-7B NF4+DQ, A100", LLAMA2_7B, "qlora", LITGPT, 13.84, GB, "LitGPT NF4 path (1)"),
    # Same LitGPT table, not in DESIGN.md: micro-batch 2, and the 13B model.
    ("LitGPT Llama-2-7B LoRA bf16 mb2, A100", LLAMA2_7B, "lora", {**LITGPT, "micro_batch": 2}, 29.07, GB,
     "same table; not in DESIGN.md"),
    ("LitGPT Llama-2-13B LoRA bf16, A100", LLAMA2_13B, "lora", LITGPT, 38.12, GB, "same table; not in DESIGN.md"),
    ("LitGPT Llama-2-13B NF4+DQ, A100", LLAMA2_13B, "qlora", LITGPT, 22.55, GB, "LitGPT NF4 path (1); same table"),
    ("torchtune Llama-3.1-8B QLoRA, 4090", LLAMA31_8B, "qlora", TORCHTUNE, 7.4, GiB, "chunked CE ~ fused"),
    ("torchtune Llama-3.1-8B LoRA, 4090", LLAMA31_8B, "lora", TORCHTUNE, 16.2, GiB, "chunked CE ~ fused"),
]

# The rule-of-thumb table gives no sequence length or checkpointing: batch 4 x 512 tokens with gradient
# checkpointing, tunetop's defaults otherwise (TRL SFTTrainer, bf16 autocast, padded batches, and for QLoRA
# prepare_model_for_kbit_training's fp32 embeddings and norms), is assumed.
RULE_MODELS = {7: "meta-llama/Llama-2-7b-hf", 13: "meta-llama/Llama-2-13b-hf", 30: "Qwen/Qwen2.5-32B",
               70: "meta-llama/Llama-3.1-70B"}
RULE_SETUP = dict(micro_batch=4, seq_len=512, gradient_checkpointing=True)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def published_rows() -> list[list[str]]:
    rows = []
    for label, cfg, method, setup, value, unit, note in PUBLISHED:
        est = estimate(cfg, method=method, **setup)
        allocated = est.total - est.cuda_overhead
        u = "GB" if unit == GB else "GiB"
        rows.append([
            label, f"{value:.2f} {u}", f"{allocated / unit:.2f} {u}", f"{est.total / unit:.2f} {u}",
            f"{allocated / unit / value:.2f}", note,
        ])
    return rows


def rule_rows() -> list[list[str]]:
    rows = []
    for rule in RULES_OF_THUMB:
        model = RULE_MODELS[int(rule.billions)]
        est = estimate(lookup(model), method=rule.method, **RULE_SETUP)
        rows.append([
            f"{rule.method} {rule.billions:g}B", model, f"{rule.gb:g} GB", f"{est.total / GB:.1f} GB",
            f"{est.total / GB / rule.gb:.2f}",
        ])
    return rows


def main() -> None:
    print("Published peak measurements (DESIGN.md) vs our estimate")
    print(_table(["setup", "published", "ours (alloc.)", "ours (total)", "ratio", "notes"], published_rows()))
    print("ratio = ours (allocated: total minus the CUDA-overhead term) / published")
    print("(1) LitGPT's NF4 rows sit ~0.35 bytes/parameter above ours while its bf16 rows match: a cost of")
    print("    its 2023 4-bit path (bitsandbytes 0.41) that none of our terms explains.")
    print()
    print("Rule of thumb vs our estimate (micro-batch 4 x 512 tokens, gradient checkpointing, total)")
    print(_table(["rule", "model", "quoted", "ours", "ratio"], rule_rows()))


if __name__ == "__main__":
    main()
