"""Benchmark: one CPU process against two (DDP over gloo, torchrun), the same global batch, side by side.

Both runs go through `tunetop run` as users start them: 1 process with micro-batch 4 x accumulation 4, and
`--processes 2` with 4 x 2 per rank (16 rows a step either way). Steps/s and samples/s are measured from
the `step` events' timestamps after the first WARMUP steps (start-up, imports and the first all-reduce
excluded). On a CPU the two ranks share the cores (each gets half of OMP_NUM_THREADS), so the ratio says
what the communication and the per-rank overhead cost, not what two GPUs gain; on GPUs run
tests/bench/gpu_distributed.py.

    python tests/bench/bench_distributed.py [--steps 30] [--hidden 256]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import make_model  # noqa: E402

WARMUP = 3


def profile_text(model: Path, steps: int, grad_accum: int) -> str:
    return f"""
[model]
name_or_path = "{model}"
[data]
path = "{ROOT / 'assets/data/messages.jsonl'}"
[method]
type = "lora"
lora_r = 8
lora_alpha = 16
lora_dropout = 0.0
[training]
max_steps = {steps}
micro_batch = 4
grad_accum = {grad_accum}
learning_rate = 1e-3
max_seq_len = 256
gradient_checkpointing = false
optimizer = "adamw_torch"
save_steps = {steps}
"""


def run(home: Path, profile: Path, *flags: str) -> dict:
    env = {**os.environ, "TUNETOP_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-m", "tuiapp", "run", str(profile), *flags], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    run_dir = sorted((home / "runs").iterdir())[-1]
    evs = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines() if l.strip()]
    steps = [e for e in evs if e["type"] == "step"]
    start = next(e for e in evs if e["type"] == "start")
    timed = steps[WARMUP:]
    span = timed[-1]["t"] - timed[0]["t"]
    n = len(timed) - 1
    return {"world_size": start.get("world_size", 1), "effective_batch": start["effective_batch"],
            "steps_per_s": n / span, "samples_per_s": n * start["effective_batch"] / span,
            "tokens_per_s": (timed[-1]["tokens_seen"] - timed[0]["tokens_seen"]) / span}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model(args.hidden, tmp / "model")
        one, two = tmp / "one.toml", tmp / "two.toml"
        one.write_text(profile_text(model, args.steps, grad_accum=4))
        two.write_text(profile_text(model, args.steps, grad_accum=2))
        a = run(tmp / "h1", one)
        b = run(tmp / "h2", two, "--processes", "2")
    print(f"cores: {os.cpu_count()}, hidden {args.hidden}, {args.steps} steps, global batch 16 rows "
          "(timings are noisy on a shared machine)")
    print(f"{'':<26}{'steps/s':>10}{'samples/s':>12}{'tokens/s':>12}")
    for label, r in (("1 process (4 x 4)", a), ("2 processes DDP (4 x 2 x 2)", b)):
        print(f"{label:<26}{r['steps_per_s']:>10.3f}{r['samples_per_s']:>12.1f}{r['tokens_per_s']:>12.0f}")
    print(f"scaling ratio (2 processes / 1): {b['samples_per_s'] / a['samples_per_s']:.2f}")


if __name__ == "__main__":
    main()
