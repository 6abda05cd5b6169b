"""GPU calibration of the VRAM estimate: the real peak of one training step against the estimate.

Run on a machine with an NVIDIA GPU (not a test; nothing is asserted):

    python tests/bench/calibrate_gpu.py            # the whole grid, a few minutes on one GPU
    python tests/bench/calibrate_gpu.py --quick    # one config per family

For each small real-shape config (real layer widths of Llama 3.2, Qwen3, Gemma 3, Phi-3, Mixtral-style MoE and
OLMo-2, random init, few layers so it runs anywhere), each method (QLoRA, LoRA, full) and gradient
checkpointing off and on, it runs one forward + backward + optimizer step the way tunetop's engine does
(bf16 autocast, peft adapters in fp32 for LoRA and bf16 for QLoRA, no prepare_model_for_kbit_training,
model(labels=...) loss) and prints torch.cuda.max_memory_allocated and max_memory_reserved beside the
estimate's total minus its CUDA-context term (allocated) and its total (reserved), with the ratios.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.estimate import estimate, lookup  # noqa: E402
from engine.estimate.vram import CUDA_CONTEXT_BYTES  # noqa: E402

GiB = 1024**3


def shrink(model_id: str, layers: int, **over) -> dict:
    """A bundled config with its real widths and `layers` decoder layers."""
    cfg = lookup(model_id)
    if "text_config" in cfg:  # the multimodal wrapper: calibrate its text part
        cfg = {**cfg["text_config"]}
    return {**cfg, "num_hidden_layers": layers, **over}


GRID = {
    "llama-3.2-1B x4": shrink("meta-llama/Llama-3.2-1B", 4),
    "qwen3-1.7B x4": shrink("Qwen/Qwen3-1.7B", 4),
    "gemma-3-1b x4": shrink("google/gemma-3-1b-pt", 4),
    "phi-3-mini x2": shrink("microsoft/Phi-3-mini-4k-instruct", 2),
    "olmo-2-7B x2": shrink("allenai/OLMo-2-1124-7B", 2),
    "qwen3-30B-A3B x2": shrink("Qwen/Qwen3-30B-A3B", 2),
}
METHODS = ("qlora", "lora", "full")


def one_step(torch, transformers, peft, cfg: dict, method: str, gc_on: bool, mb: int, seq: int, tmp: Path):
    """Peak allocated and reserved bytes of one training step, from a clean CUDA allocator."""
    c = dict(cfg)
    hf_cfg = transformers.AutoConfig.for_model(c.pop("model_type"), **c)
    torch.manual_seed(0)
    if method == "qlora":
        path = tmp / f"q{abs(hash(str(sorted(cfg.items()))))}"
        if not path.exists():
            transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16).save_pretrained(path)
        torch.cuda.reset_peak_memory_stats()
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.bfloat16, device_map={"": 0},
            quantization_config=transformers.BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16))
    else:
        torch.cuda.reset_peak_memory_stats()
        model = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16).cuda()
    if method != "full":
        for p in model.parameters():
            p.requires_grad_(False)
        if gc_on:
            model.enable_input_require_grads()
        model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                           target_modules="all-linear", task_type="CAUSAL_LM"))
        if method == "qlora":  # TRL's SFTTrainer casts a quantized model's adapters to bf16
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
    if gc_on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, cfg["vocab_size"], (mb, seq), device="cuda")
    for _ in range(2):  # the second step has the optimizer state, like every step after the first
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=False)   # the engine accumulates: gradients stay allocated
        del loss
    peak = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    del model, optim, ids
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one method and checkpointing off, per family")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=1024)
    args = ap.parse_args()
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        sys.exit(f"needs torch, transformers and peft: {exc}")
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: run this on a machine with an NVIDIA GPU (it measures torch.cuda peaks)")
    transformers.logging.set_verbosity_error()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}; micro-batch {args.micro_batch} x {args.seq} tokens, LoRA r=16 all-linear, "
          "AdamW, bf16 autocast")
    head = f"{'config':18s} {'method':6s} {'ckpt':4s} {'alloc GiB':>9s} {'est':>7s} {'ratio':>5s} " \
           f"{'reserved':>9s} {'est':>7s} {'ratio':>5s}"
    print(head + "\n" + "-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in GRID.items():
            for method in (("lora",) if args.quick else METHODS):
                for gc_on in ((False,) if args.quick else (False, True)):
                    try:
                        alloc, reserved = one_step(torch, transformers, peft, cfg, method, gc_on,
                                                   args.micro_batch, args.seq, Path(tmp))
                    except Exception as exc:  # noqa: BLE001 - report the row and go on
                        print(f"{name:18s} {method:6s} {'on' if gc_on else 'off':4s} failed: "
                              f"{type(exc).__name__}: {str(exc)[:80]}")
                        torch.cuda.empty_cache()
                        continue
                    est = estimate(cfg, method=method, micro_batch=args.micro_batch, seq_len=args.seq,
                                   gradient_checkpointing=gc_on, optimizer="adamw_torch", loss="full",
                                   padding_free=True)
                    e_alloc = est.total - CUDA_CONTEXT_BYTES
                    print(f"{name:18s} {method:6s} {'on' if gc_on else 'off':4s} {alloc / GiB:9.2f} "
                          f"{e_alloc / GiB:7.2f} {e_alloc / alloc:5.2f} {reserved / GiB:9.2f} {est.total / GiB:7.2f} "
                          f"{est.total / reserved:5.2f}")
    print("ratio = estimate / measured. allocated excludes the CUDA context (not counted by torch); the estimate's "
          "reserved side is its total (context + 10% fragmentation allowance).")


if __name__ == "__main__":
    main()
