"""Benchmark: the tunetop engine against a plain trl SFTTrainer script, side by side, fairly.

Both sides get the same model, the same rows in the same order (the engine's own loader shuffles the rows;
the plain script is given the rows in that order, so both trainers' samplers see the same dataset), the same
batch, accumulation, sequence length, optimizer, precision and seed, and the same OpenMP thread policy
(the engine's is pinned with TUNETOP_THREAD_POLICY, the script's with OMP_WAIT_POLICY). The first losses
of both sides are printed to show they train on the same batches.

For every (method, CPU load, thread policy) cell: rounds alternate which side goes first, after one
warm-up pair for the whole benchmark (page cache, bytecode). "hog" runs a busy-looping process beside the
trainers (another run, a compile, a busy rig). Steps/s is measured over optimizer steps after the first
WARMUP ones; start-up is from the process start to the first step. Printed: each side's median steps/s,
the median and min-max of the per-round ratios, and the settings each side ran with. The "auto" policy
row runs the engine as users get it (engine/threads.py decides) against the plain script under the
library default (what a plain TRL user gets).

    python tests/bench/bench_engine_speed.py [--steps 20] [--rounds 2] [--methods lora,qlora]
        [--loads quiet,hog] [--policies default,passive,auto] [--hidden 256]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import make_model  # noqa: E402

WARMUP = 3
MICRO, ACCUM, SEQ, LR, SEED = 8, 2, 256, 3e-3, 42

PLAIN = textwrap.dedent("""
    import json, sys, time
    t_start = float(sys.argv[6])
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    model_dir, data, steps, out, method = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    times, losses = [], []
    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.time())
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    kw = {"dtype": torch.float32}
    if method == "qlora":
        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True,
                                                       bnb_4bit_compute_dtype=torch.float32)
        kw["device_map"] = {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    ds = load_dataset("json", data_files=data, split="train")
    cfg = SFTConfig(output_dir=out, per_device_train_batch_size=%(micro)d, gradient_accumulation_steps=%(accum)d,
                    max_steps=steps, learning_rate=%(lr)r, lr_scheduler_type="cosine", max_length=%(seq)d,
                    assistant_only_loss=True, optim="adamw_torch", use_cpu=True, report_to="none",
                    save_strategy="no", logging_steps=1, disable_tqdm=True, seed=%(seed)d, data_seed=%(seed)d,
                    dataloader_num_workers=0, warmup_steps=0,
                    # trl defaults to bf16 and gradient checkpointing; match the engine on CPU (fp32, off).
                    bf16=False, gradient_checkpointing=False)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora,
               callbacks=[Clock()]).train()
    print(json.dumps({"times": times, "losses": losses, "start": t_start}))
""") % {"micro": MICRO, "accum": ACCUM, "lr": LR, "seq": SEQ, "seed": SEED}

HOG = "while True: pass"


def profile_dict(model: Path, data: Path, steps: int, method: str) -> dict:
    return {"model": {"name_or_path": str(model)}, "data": {"path": str(data), "seed": SEED},
            "method": {"type": method, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
            "training": {"max_steps": steps, "micro_batch": MICRO, "grad_accum": ACCUM, "learning_rate": LR,
                         "max_seq_len": SEQ, "gradient_checkpointing": False, "optimizer": "adamw_torch",
                         "warmup_ratio": 0.0,
                         "save_steps": 10_000, "seed": SEED}}


def rows_in_engine_order(profile: dict, out: Path) -> Path:
    """The rows the engine trains on, in the order its loader leaves them, for the plain script."""
    from engine.data import load_data
    from engine.profile import validate
    report = load_data(validate(profile).data)
    # Keys starting with "_" are the loader's bookkeeping (the row's file:line), not data.
    out.write_text("".join(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n"
                           for row in report.train))
    return out


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
                                                              "TUNETOP_THREAD_POLICY")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


# The policies compared, as the environment of each side: the engine's pinned through TUNETOP_THREAD_POLICY
# (engine/threads.py), the plain script's through OpenMP's own variables. "spin": libgomp spins a short while
# (GOMP_SPINCOUNT, default 300,000 when no policy is set) before it sleeps.
SPIN_COUNT = "10000"   # engine/threads.py SHORT_SPIN
ENGINE_ENV = {"default": {"TUNETOP_THREAD_POLICY": "default"}, "passive": {"TUNETOP_THREAD_POLICY": "passive"},
              "auto": {"TUNETOP_THREAD_POLICY": "auto"},
              "spin": {"TUNETOP_THREAD_POLICY": "spin"}}
PLAIN_ENV = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "auto": {},
             "spin": {"GOMP_SPINCOUNT": SPIN_COUNT}}


def engine_run(profile: dict, policy: str, home: Path) -> dict:
    import tomli_w

    from engine import events, rundir
    home.mkdir(parents=True, exist_ok=True)
    path = home / "bench.toml"
    path.write_text(tomli_w.dumps(profile))
    env = {**base_env(), "TUNETOP_HOME": str(home), **ENGINE_ENV[policy]}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "tuiapp", "run", str(path)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    run_dir = rundir.list_runs(home / "runs")[0]
    steps = [e for e in events.read_all(run_dir / "events.jsonl") if e["type"] == "step"]
    log = (run_dir / rundir.LOG).read_text(errors="replace")
    chosen = re.search(r"^threads: (.*)$", log, re.M)
    return {"times": [e["t"] for e in steps], "losses": [e["loss"] for e in steps], "start": t0,
            "settings": chosen.group(1) if chosen else "?"}


def plain_run(model: Path, rows: Path, steps: int, out: Path, method: str, policy: str) -> dict:
    env = {**base_env(), **PLAIN_ENV[policy]}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(model), str(rows), str(steps), str(out), method,
                           repr(t0)], capture_output=True, text=True, check=True, env=env)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["settings"] = " ".join(f"{k}={v}" for k, v in PLAIN_ENV[policy].items()) or "the OpenMP default"
    return result


def rate(result: dict) -> float:
    t = result["times"]
    return (len(t) - 1 - WARMUP) / (t[-1] - t[WARMUP])


def startup(result: dict) -> float:
    return result["times"][0] - result["start"]


def cell(model, data, rows, steps, rounds, method, policy, tmp: Path, tag: str) -> dict:
    engine, plain = [], []
    plain_policy = policy
    for i in range(rounds):
        sides = [("engine", lambda: engine_run(profile_dict(model, data, steps, method), policy,
                                               tmp / f"{tag}-e{i}")),
                 ("plain", lambda: plain_run(model, rows, steps, tmp / f"{tag}-p{i}", method, plain_policy))]
        for side, fn in (sides if i % 2 == 0 else sides[::-1]):
            (engine if side == "engine" else plain).append(fn())
    ratios = [rate(e) / rate(p) for e, p in zip(engine, plain)]
    return {"engine": engine, "plain": plain, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--methods", default="lora,qlora")
    ap.add_argument("--loads", default="quiet,hog")
    ap.add_argument("--policies", default="default,passive,auto")
    args = ap.parse_args()
    data = ROOT / "assets" / "data" / "messages.jsonl"
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = make_model(args.hidden, tmp / "model")
        rows = rows_in_engine_order(profile_dict(model, data, args.steps, "lora"), tmp / "rows.jsonl")
        t0 = time.time()
        cell(model, data, rows, WARMUP + 3, 1, "lora", "default", tmp, "warmup")   # discarded
        print(f"warm-up pair {time.time() - t0:.0f} s", flush=True)
        for method in args.methods.split(","):
            for load in args.loads.split(","):
                hog = subprocess.Popen([sys.executable, "-c", HOG]) if load == "hog" else None
                try:
                    for policy in args.policies.split(","):
                        t0 = time.time()
                        r = cell(model, data, rows, args.steps, args.rounds, method, policy, tmp,
                                 f"{method}-{load}-{policy}")
                        results.append((method, load, policy, r))
                        print(f"{method:5} {load:5} {policy:8} engine {statistics.median(map(rate, r['engine'])):6.2f}"
                              f" plain {statistics.median(map(rate, r['plain'])):6.2f} step/s, ratios "
                              f"{', '.join(f'{x:.2f}' for x in r['ratios'])} ({time.time() - t0:.0f} s)",
                              flush=True)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    print(f"\n{os.cpu_count()} CPUs; model hidden {args.hidden}, 4 layers; micro-batch {MICRO} x {ACCUM}, seq {SEQ}, "
          f"{args.steps} steps ({WARMUP} untimed), {args.rounds} rounds per cell, sides alternate")
    head = (f"{'method':6} {'load':6} {'policy':8} {'engine st/s':>11} {'plain st/s':>10} {'ratio med':>9} "
            f"{'min-max':>11} {'start e/p s':>11}  settings (engine | plain)")
    print(head)
    print("-" * len(head))
    for method, load, policy, r in results:
        e = statistics.median(map(rate, r["engine"]))
        p = statistics.median(map(rate, r["plain"]))
        ratios = r["ratios"]
        s_e = statistics.median(map(startup, r["engine"]))
        s_p = statistics.median(map(startup, r["plain"]))
        print(f"{method:6} {load:6} {policy:8} {e:11.2f} {p:10.2f} {statistics.median(ratios):9.2f} "
              f"{min(ratios):5.2f}-{max(ratios):<5.2f} {s_e:5.1f}/{s_p:<5.1f}  "
              f"{r['engine'][0]['settings']} | {r['plain'][0]['settings']}")
    same = results[0][3]
    print(f"\nsame batches: first losses engine {[round(x, 4) for x in same['engine'][0]['losses'][:3]]}, "
          f"plain {[round(x, 4) for x in same['plain'][0]['losses'][:3]]}")


if __name__ == "__main__":
    main()
