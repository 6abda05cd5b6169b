"""Benchmark: what an out-of-memory backoff costs, against the same run without OOM and against what
transformers' auto_find_batch_size does with the same OOM.

Three in-process runs of the tiny model (LoRA, fp32, CPU), same data, micro-batch 8 x accumulation 2:
  no OOM                 the reference
  tunetop backoff        one OOM injected in the backward pass of step --oom-step (TUNETOP_FAULT_OOM_STEPS);
                         the step is re-run as 2 chunks and the run goes on at micro-batch 4 x accumulation 4
  auto_find_batch_size   the same OOM raised in a plain trl SFTTrainer with auto_find_batch_size=True:
                         accelerate restarts the training loop from step 0 with batch x 0.9 and the same
                         accumulation (so the effective batch shrinks and the finished steps are repeated)
Side by side and fair: one warm-up run first (imports, caches; discarded), then --rounds rounds, each
running the three in a rotated order (so no kind always goes first or last), in one process on one thread
with the same data and seed. Printed: per kind the medians of steps/s before, during (the step that hit
the OOM) and after, total time, optimizer steps run, steps repeated and the effective batch at the end;
then each round's cost (its total minus the same round's no-OOM total) as median and min-max; and the
settings every side ran with.

    python tests/bench/bench_backoff.py [--steps 30] [--oom-step 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def clock():
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []       # (global_step, time) at each optimizer step's end
            self.begin = None

        def on_train_begin(self, args, state, control, **kw):
            self.begin = self.begin or time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            if not self.marks or self.marks[-1][0] != -state.global_step:
                self.marks.append((-state.global_step, time.perf_counter()))   # start of this step

        def on_step_end(self, args, state, control, **kw):
            self.marks.append((state.global_step, time.perf_counter()))
    return Clock()


def rates(marks, oom_step):
    """steps/s before the OOM step (first pass), during it (from its start to the moment training has
    completed it: for auto_find_batch_size this includes the restart and the repeated steps) and after."""
    first_start, first_end, last_end = {}, {}, {}
    for step, t in marks:
        if step > 0:
            first_end.setdefault(step, t)
            last_end[step] = t
        else:
            first_start.setdefault(-step + 1, t)

    def rate(n, t0, t1):
        return n / (t1 - t0) if t0 is not None and t1 is not None and t1 > t0 else None
    last = max(last_end)
    before = rate(oom_step - 2, first_start.get(2), first_end.get(oom_step - 1))
    during = rate(1, first_start.get(oom_step), last_end.get(oom_step))
    after = rate(last - oom_step, last_end.get(oom_step), last_end.get(last))
    return before, during, after


def run(kind, steps, oom_step, tmp):
    import torch
    from tests.backoff_helpers import build_trainer
    from trl import SFTTrainer

    c = clock()
    config = dict(max_steps=steps, logging_steps=1, save_strategy="no", lr_scheduler_type="constant",
                  learning_rate=1e-3)
    if kind == "auto_find_batch_size":
        fired = []

        class Faulty(SFTTrainer):
            def compute_loss(self, model, inputs, *a, **k):
                if self.state.global_step + 1 == oom_step and not fired and model.training:
                    fired.append(1)
                    raise torch.OutOfMemoryError(f"CUDA out of memory. (simulated at step {oom_step})")
                return super().compute_loss(model, inputs, *a, **k)
        config["auto_find_batch_size"] = True
        trainer = build_trainer("lora", rows=400, tmp=tmp, config=config, trainer_class=Faulty, callbacks=[c])
    else:
        if kind == "tunetop backoff":
            os.environ["TUNETOP_FAULT_OOM_STEPS"] = str(oom_step)
        trainer = build_trainer("lora", rows=400, tmp=tmp, config=config, callbacks=[c])
        os.environ.pop("TUNETOP_FAULT_OOM_STEPS", None)
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    steps_run = sum(1 for s, _ in c.marks if s > 0)
    batch = getattr(trainer, "_train_batch_size", trainer.args.per_device_train_batch_size)
    accum = trainer.args.gradient_accumulation_steps
    if hasattr(trainer, "bo"):
        s = trainer.bo.settings()
        shape = f"{s['micro_batch']} x {s['grad_accum']}"
        effective = trainer.bo.effective_batch
    else:
        shape, effective = f"{batch} x {accum}", batch * accum
    return dict(kind=kind, total=total, steps_run=steps_run, repeated=steps_run - steps, shape=shape,
                effective=effective, rates=rates(c.marks, oom_step))


KINDS = ("no OOM", "tunetop backoff", "auto_find_batch_size")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--oom-step", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNETOP_HOME"] = tmp
        run("no OOM", 4, 2, Path(tmp) / "warmup")      # discarded: the first run pays imports and caches
        for r in range(args.rounds):
            for kind in KINDS[r % 3:] + KINDS[:r % 3]:
                runs[kind].append(run(kind, args.steps, args.oom_step, Path(tmp) / f"{kind.replace(' ', '_')}-{r}"))
    med = statistics.median
    fmt = lambda x: f"{x:6.2f}" if x else "   n/a"   # noqa: E731
    print(f"\n{args.steps} optimizer steps, OOM at step {args.oom_step}, tiny model, LoRA fp32, CPU; "
          f"{args.rounds} rounds after a warm-up, order rotated per round; medians")
    print(f"settings, every side: torch threads 1, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"400 rows, micro-batch 8 x accumulation 2, seed 42, lr 1e-3 constant")
    print(f"{'run':22s} {'steps/s before':>14s} {'during':>8s} {'after':>8s} {'total s':>8s} {'steps run':>10s} "
          f"{'repeated':>9s} {'mb x accum at end':>18s} {'effective':>10s}")
    for kind in KINDS:
        rs = runs[kind]
        rates_ = [[r["rates"][i] for r in rs if r["rates"][i]] for i in range(3)]
        before, during, after = (med(x) if x else None for x in rates_)
        last = rs[-1]
        print(f"{kind:22s} {fmt(before):>14s} {fmt(during):>8s} {fmt(after):>8s} {med(r['total'] for r in rs):8.2f} "
              f"{last['steps_run']:10d} {last['repeated']:9d} {last['shape']:>18s} {last['effective']:10d}")
    for kind in KINDS[1:]:
        costs = [r["total"] - ref["total"] for r, ref in zip(runs[kind], runs["no OOM"])]
        print(f"cost of {kind}: median {med(costs):+.2f} s over the same round's run without OOM "
              f"(min {min(costs):+.2f}, max {max(costs):+.2f}, {len(costs)} rounds)")
    print(f"auto_find_batch_size repeated {runs['auto_find_batch_size'][-1]['repeated']} steps; effective batch "
          f"{runs['no OOM'][-1]['effective']} -> {runs['auto_find_batch_size'][-1]['effective']}")


if __name__ == "__main__":
    main()
