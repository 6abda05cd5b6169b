"""For a machine with NVIDIA GPUs (not a test): DDP on every GPU found against one process, and FSDP-QLoRA,
on a random-init model of a real shape; prints tokens/s and peak memory per GPU side by side.

Every run goes through `tunetop run` (torchrun under it for several GPUs), so what is measured is what users
get. The model is built from a bundled architecture table entry (no download): its config, random weights,
the tiny model's tokenizer. The data is the bundled chat sample, every row padded/cut to --seq tokens.

    python tests/bench/gpu_distributed.py [--shape meta-llama/Llama-3.2-1B] [--steps 20] [--seq 1024]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
WARMUP = 3


def make_model(shape: str, folder: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from engine.estimate import architectures
    config = dict(architectures.lookup(shape) or {})
    if not config:
        raise SystemExit(f"{shape} is not in engine/estimate/architectures.py")
    tok = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-llama")
    config["vocab_size"] = max(len(tok), 256)     # the tiny tokenizer's ids must be valid
    cfg = AutoConfig.for_model(**config)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def profile_text(model: Path, method: str, steps: int, seq: int, grad_accum: int, optimizer: str) -> str:
    lora = "lora_r = 16\nlora_alpha = 32\nlora_dropout = 0.0\n" if method != "full" else ""
    return f"""
[model]
name_or_path = "{model}"
[data]
path = "{ROOT / 'assets/data/messages.jsonl'}"
[method]
type = "{method}"
{lora}
[training]
max_steps = {steps}
micro_batch = 2
grad_accum = {grad_accum}
learning_rate = 1e-4
max_seq_len = {seq}
gradient_checkpointing = true
optimizer = "{optimizer}"
save_steps = {steps * 10}
"""


def run(home: Path, profile: Path, *flags: str) -> dict:
    env = {**os.environ, "TUNETOP_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "tuiapp", "run", str(profile), *flags], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    run_dir = sorted((home / "runs").iterdir())[-1]
    if out.returncode != 0:
        return {"error": (out.stdout + out.stderr)[-600:], "run_dir": str(run_dir)}
    evs = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines() if l.strip()]
    steps = [e for e in evs if e["type"] == "step"][WARMUP:]
    span = steps[-1]["t"] - steps[0]["t"]
    ranks = steps[-1].get("memory_ranks") or [{"rank": 0, **steps[-1]["memory"]}]
    return {"tokens_per_s": (steps[-1]["tokens_seen"] - steps[0]["tokens_seen"]) / span,
            "steps_per_s": (len(steps) - 1) / span,
            "peak_gib": [round((r.get("cuda_peak") or 0) / 2**30, 2) for r in ranks]}


def main() -> None:
    import torch
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="meta-llama/Llama-3.2-1B")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seq", type=int, default=1024)
    args = ap.parse_args()
    n = torch.cuda.device_count()
    if n == 0:
        raise SystemExit("no CUDA GPU: this script is for a GPU machine (tests/bench/bench_distributed.py runs on CPU)")
    print(f"{n} x {torch.cuda.get_device_name(0)}; shape {args.shape}, seq {args.seq}, {args.steps} steps")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model(args.shape, tmp / "model")
        per_rank_accum = 4
        cases = [("1 GPU, LoRA", "lora", per_rank_accum * n, "adamw_torch", ["--gpus", "0"])]
        if n > 1:
            cases += [(f"DDP x{n}, LoRA", "lora", per_rank_accum, "adamw_torch", ["--gpus", "all", "--strategy", "ddp"]),
                      (f"FSDP x{n}, QLoRA", "qlora", per_rank_accum, "adamw_torch",
                       ["--gpus", "all", "--strategy", "fsdp"])]
        cases.append(("1 GPU, QLoRA", "qlora", per_rank_accum * n, "paged_adamw_8bit", ["--gpus", "0"]))
        for i, (label, method, accum, optim, flags) in enumerate(cases):
            path = tmp / f"p{i}.toml"
            path.write_text(profile_text(model, method, args.steps, args.seq, accum, optim))
            results.append((label, run(tmp / f"h{i}", path, *flags)))
    print(f"global batch {2 * per_rank_accum * n} rows a step in every case")
    print(f"{'':<20}{'tokens/s':>10}{'steps/s':>9}  peak GiB per GPU")
    for label, r in results:
        if "error" in r:
            print(f"{label:<20} failed: {r['error']!r}")
            continue
        print(f"{label:<20}{r['tokens_per_s']:>10.0f}{r['steps_per_s']:>9.3f}  {r['peak_gib']}")
    base = dict(results).get("1 GPU, LoRA")
    ddp = next((r for label, r in results if label.startswith("DDP")), None)
    if base and ddp and "error" not in base and "error" not in ddp:
        print(f"DDP scaling: {ddp['tokens_per_s'] / base['tokens_per_s']:.2f}x on {n} GPUs")


if __name__ == "__main__":
    main()
