"""Peak memory per GPU for each strategy, against hand computations from the models' dimensions.

The single-GPU terms (activations, logits, CUDA overhead, adapter state) come from engine/estimate and are
tested there; what is checked here is how each strategy moves the weights and the trainable state."""
from __future__ import annotations

import math

import pytest

from engine.distributed.estimate import per_gpu
from engine.estimate import architectures, vram
from tests.helpers import run_cli

GiB = 2**30
CARD_24GB = 24 * GiB


def nf4(n: int) -> int:
    """NF4 with double quantization: n/2 bytes of codes, one 8-bit absmax per 64 values, one fp32 absmax per
    256 absmaxes, and the two codebooks (16 + 256 fp32) and an fp32 offset per quantized matrix."""
    blocks = math.ceil(n / 64)
    return n // 2 + blocks + 4 * math.ceil(blocks / 256) + 16 * 4 + 256 * 4 + 4


def llama_layer_linears(h: int, inter: int, kv: int) -> list[int]:
    return [h * h, h * kv, h * kv, h * h, h * inter, h * inter, inter * h]   # q k v o gate up down


def qlora_estimate(cfg, seq):
    return vram.estimate(cfg, method="qlora", micro_batch=1, seq_len=seq, lora_r=16, gradient_checkpointing=True,
                         optimizer="adamw_torch", precision="bf16")


def test_llama_3_1_70b_qlora_fsdp_on_two_24gb_cards_by_hand():
    cfg = architectures.lookup("meta-llama/Llama-3.1-70B-Instruct")
    est = qlora_estimate(cfg, 512)
    h, layers, vocab, inter, kv = 8192, 80, 128256, 28672, 1024   # kv = 8 heads x 128
    layer_quant = sum(nf4(n) for n in llama_layer_linears(h, inter, kv))
    layer = layer_quant + 2 * h * 2                  # + two RMSNorm weights in bf16
    root = 2 * vocab * h * 2 + h * 2                 # embeddings + untied lm_head + final norm, bf16
    weights = layers * layer + root
    assert vram.weight_bytes(cfg, "qlora", "bf16", True) == weights   # the hand model is the estimator's
    world = 2
    gathered = root + 2 * layer                       # the root unit and two layers (computing + prefetched)
    expected = (math.ceil(weights / world) + gathered - math.ceil(gathered / world)
                + (est.weights - weights)            # one dequantized weight for the 4-bit matmul
                + math.ceil(est.adapters / world) + est.activations + est.logits + est.cuda_overhead)
    fsdp = per_gpu(est, cfg, "fsdp", world)
    print(f"\n70B QLoRA seq 512: one GPU {est.total / GiB:.2f} GiB, FSDP x2 {fsdp.peak / GiB:.2f} GiB per GPU "
          f"(hand: {expected / GiB:.2f})")
    assert fsdp.peak == expected
    assert 18 * GiB < weights / world < 19 * GiB          # about 37 GiB of weights, half on each card
    assert vram.verdict(fsdp.peak, CARD_24GB) != "does not fit"
    assert vram.verdict(est.total, CARD_24GB) == "does not fit"   # one card (or a DDP replica) cannot
    ddp = per_gpu(est, cfg, "ddp", world)
    assert ddp.peak == est.total + est.trainable_params * 2      # + one bf16 copy of the adapter gradients


def test_qwen_32b_qlora_model_parallel_on_two_24gb_cards_by_hand():
    cfg = architectures.lookup("Qwen/Qwen2.5-32B")
    est = qlora_estimate(cfg, 1024)
    h, layers, vocab, inter, kv = 5120, 64, 152064, 27648, 1024
    counts_bias = (h + kv + kv) * layers                          # Qwen2 has q/k/v biases (bf16)
    layer = sum(nf4(n) for n in llama_layer_linears(h, inter, kv)) + 2 * h * 2 + (h + 2 * kv) * 2
    embed, head = vocab * h * 2, vocab * h * 2 + h * 2            # untied lm_head and the final norm on GPU 1
    assert vram.weight_bytes(cfg, "qlora", "bf16", True) == layers * layer + embed + head, counts_bias
    mp = per_gpu(est, cfg, "model_parallel", 2)
    assert mp.layers_per_gpu == (32, 32)
    dequant = est.weights - vram.weight_bytes(cfg, "qlora", "bf16", True)
    gpu0 = (32 * layer + embed + dequant + int(32 * est.adapters / layers) + int(32 * est.activations / layers)
            + vram.CUDA_CONTEXT_BYTES + int(vram.FRAGMENTATION * 32 * est.activations / layers))
    gpu1 = (32 * layer + head + dequant + int(32 * est.adapters / layers) + int(32 * est.activations / layers)
            + est.logits + est.cuda_overhead)
    print(f"\n32B QLoRA seq 1024 model_parallel x2: GPU 0 {mp.per_gpu[0] / GiB:.2f} GiB, GPU 1 "
          f"{mp.per_gpu[1] / GiB:.2f} GiB (one GPU: {est.total / GiB:.2f})")
    assert mp.per_gpu == (gpu0, gpu1)
    assert vram.verdict(est.total, CARD_24GB) != "fits" and vram.verdict(mp.peak, CARD_24GB) == "fits"


@pytest.mark.slow   # the meta-device model imports torch and transformers in a subprocess
def test_estimate_and_fit_show_the_layouts(home):
    out = run_cli("estimate", "llama3.1-70b-qlora-2x24gb", "--gpu", "3090", "--gpus", "2", "--strategy", "fsdp")
    assert out.returncode == 0, out.stderr
    assert "fsdp" in out.stdout and "per GPU over 2 x" in out.stdout and "weights (sharded)" in out.stdout
    out = run_cli("estimate", "--model", "Qwen/Qwen2.5-32B", "--method", "qlora", "--gpu", "3090", "--gpus", "2",
                  "--strategy", "model_parallel")
    assert out.returncode == 0, out.stderr
    # The map transformers uses at load (device_map="balanced"), from accelerate on the meta-device model (no
    # weights anywhere); the per-GPU figures follow its split.
    meta = next(line for line in out.stdout.splitlines() if "device map (accelerate, meta model)" in line)
    assert "GPU 0: layers 0-" in meta and "GPU 1: layers " in meta and "-63" in meta and "lm_head" in meta, meta
    first = int(meta.split("GPU 0: layers 0-")[1].split()[0])
    assert f"layers per GPU: GPU 0: layers 0-{first} + embeddings, GPU 1: layers {first + 1}-63" in out.stdout
    out = run_cli("fit", "--gpu", "3090", "--count", "2")
    assert out.returncode == 0, out.stderr
    for strategy in ("ddp", "fsdp", "model_parallel"):
        assert f"qlora   {strategy}" in out.stdout


@pytest.mark.parametrize("bad", [["--gpus", "0"], ["--strategy", "fsdp"]])
def test_layout_flags_need_each_other(home, bad):
    out = run_cli("estimate", "demo", *bad)
    assert out.returncode == 2 and "--gpus" in out.stderr and "Traceback" not in out.stderr
