"""Benchmark: the tunetop engine's training speed against a plain trl SFTTrainer script, side by side.

Same model, data, batch, accumulation, sequence length, optimizer and precision. The engine runs as it
does for users (detached subprocess, events, checkpoints at the end); the plain script is the shortest
SFTTrainer program. Runs alternate (engine, plain, engine, plain, ...) so machine noise hits both.
Steps/s is measured over optimizer steps after the first WARMUP ones. Goal: ratio >= 0.97.

    python tests/bench/bench_engine_speed.py [--steps 30] [--rounds 2] [--hidden 256]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
WARMUP = 3

PLAIN = textwrap.dedent("""
    import json, sys, time
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    model_dir, data, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    times = []
    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    ds = load_dataset("json", data_files=data, split="train")
    cfg = SFTConfig(output_dir=out, per_device_train_batch_size=8, gradient_accumulation_steps=2, max_steps=steps,
                    learning_rate=3e-3, lr_scheduler_type="cosine", max_length=256, assistant_only_loss=True,
                    optim="adamw_torch", use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                    disable_tqdm=True, seed=42, dataloader_num_workers=0,
                    # trl defaults to bf16 and gradient checkpointing; match the engine on CPU (fp32, off).
                    bf16=False, gradient_checkpointing=False)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora,
               callbacks=[Clock()]).train()
    print(json.dumps(times))
""")


def make_model(hidden: int, folder: Path) -> Path:
    """A random-init model shaped like the tiny one but wider, so a step is more than overhead."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    tiny = ROOT / "assets" / "tiny-llama"
    cfg = AutoConfig.from_pretrained(tiny)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = hidden, hidden * 3, 4
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(folder)
    return folder


def engine_run(model: Path, data: Path, steps: int, home: Path) -> float:
    import tomli_w
    profile = {"model": {"name_or_path": str(model)}, "data": {"path": str(data)},
               "method": {"type": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
               "training": {"max_steps": steps, "micro_batch": 8, "grad_accum": 2, "learning_rate": 3e-3,
                            "max_seq_len": 256, "gradient_checkpointing": False, "optimizer": "adamw_torch",
                            "save_steps": 10_000, "seed": 42}}
    home.mkdir(parents=True, exist_ok=True)
    path = home / "bench.toml"
    path.write_text(tomli_w.dumps(profile))
    env = {**os.environ, "TUNETOP_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "tuiapp", "run", str(path)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    from engine import events, rundir
    run_dir = rundir.list_runs(home / "runs")[0]
    steps_t = [e["t"] for e in events.read_all(run_dir / "events.jsonl") if e["type"] == "step"]
    return (len(steps_t) - 1 - WARMUP) / (steps_t[-1] - steps_t[WARMUP])


def plain_run(model: Path, data: Path, steps: int, out: Path) -> float:
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(model), str(data), str(steps), str(out)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_WAIT_POLICY": "PASSIVE"})
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    return (len(times) - 1 - WARMUP) / (times[-1] - times[WARMUP])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    data = ROOT / "assets" / "data" / "messages.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model(args.hidden, tmp / "model")
        engine, plain = [], []
        for i in range(args.rounds):
            t0 = time.time()
            engine.append(engine_run(model, data, args.steps, tmp / f"home{i}"))
            plain.append(plain_run(model, data, args.steps, tmp / f"plain{i}"))
            print(f"round {i + 1}: engine {engine[-1]:.3f} step/s, plain trl {plain[-1]:.3f} step/s "
                  f"({time.time() - t0:.0f} s)")
    e, p = sum(engine) / len(engine), sum(plain) / len(plain)
    print(f"\n{'':28}{'steps/s':>10}")
    print(f"{'tunetop engine':28}{e:>10.3f}")
    print(f"{'plain trl SFTTrainer':28}{p:>10.3f}")
    print(f"{'ratio (goal >= 0.97)':28}{e / p:>10.3f}")


if __name__ == "__main__":
    main()
