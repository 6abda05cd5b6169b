"""Helpers for the OOM backoff tests: an in-process TunetopTrainer on the tiny model, one accumulation
window computed at a given split, and real engine runs with the fault hooks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = ROOT / "assets" / "tiny-llama"
MESSAGES = ROOT / "assets" / "data" / "messages.jsonl"


def build_trainer(method: str = "lora", packing: bool = False, micro_batch: int = 8, grad_accum: int = 2,
                  max_seq_len: int = 128, rows: int = 64, writer=None, tmp: Path | None = None,
                  eval_fraction: float = 0.0, config: dict | None = None, trainer_class=None, callbacks=None,
                  **training):
    """A TunetopTrainer on the tiny model, fp32 everywhere (QLoRA adapters cast back to fp32, since trl
    casts them to bf16 and the comparison is meant in fp32)."""
    import torch
    from datasets import Dataset

    from engine.data import load_data
    from engine.profile.schema import Profile
    from engine.train.model import load_model, load_tokenizer, pick_placement
    from engine.train.sft_config import build_sft_config
    from engine.train.tokenize import ensure_chat_template, tokenize_rows
    from engine.train.trainer import TunetopTrainer

    p = Profile(name="grad")
    p.model.name_or_path = str(TINY_MODEL)
    p.data.path = str(MESSAGES)
    p.data.max_samples = rows
    p.data.eval_fraction = eval_fraction
    p.method.type = method
    p.method.lora_r, p.method.lora_alpha, p.method.lora_dropout = 8, 16, 0.0
    t = p.training
    t.micro_batch, t.grad_accum, t.max_seq_len, t.packing = micro_batch, grad_accum, max_seq_len, packing
    t.gradient_checkpointing, t.optimizer, t.precision, t.seed = False, "adamw_torch", "fp32", 0
    for k, v in training.items():
        setattr(t, k, v)
    report = load_data(p.data)
    tok = load_tokenizer(str(TINY_MODEL), "main", False)
    ensure_chat_template(tok)
    data = tokenize_rows(tok, report.train, max_seq_len, True)
    evals = tokenize_rows(tok, report.eval, max_seq_len, True) if report.eval else None
    placement = pick_placement("fp32")
    torch.manual_seed(0)
    model = load_model(p, placement)
    # The engine's own SFTConfig (engine/train/sft_config.py), pointed at `tmp`.
    cfg = build_sft_config(p, tmp or "/tmp/tunetop-grad", placement, micro_batch=micro_batch,
                           grad_accum=grad_accum, data_format=report.format, has_eval=evals is not None,
                           **(config or {}))
    extra = {} if trainer_class is not None else {"profile": p, "writer": writer}
    trainer = (trainer_class or TunetopTrainer)(
        model=model, args=cfg, train_dataset=Dataset.from_list(data.rows),
        eval_dataset=Dataset.from_list(evals.rows) if evals else None, processing_class=tok,
        callbacks=callbacks, **extra)
    for param in trainer.model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()   # QLoRA: trl made the adapters bf16
    if hasattr(trainer, "_trainable"):
        trainer._trainable = None
    return trainer


def first_window(trainer):
    it = iter(trainer.get_train_dataloader())
    return trainer.get_batch_samples(it, trainer.args.gradient_accumulation_steps, trainer.args.device)


def window_grads(trainer, batches, num_items, split: int, faults: dict | None = None):
    """Gradients of the adapter (trainable) parameters after one accumulation window at `split`."""
    model = trainer.model
    model.zero_grad(set_to_none=True)
    trainer.bo.split = split
    trainer._window, trainer._mb_index, trainer._num_items_override = batches, -1, None
    trainer._faults, trainer._fired = dict(faults or {}), set()
    trainer._metrics["train"].clear()
    trainer._total_train_tokens = 0
    loss = 0.0
    for b in batches:
        loss = loss + float(trainer.training_step(model, b, num_items))
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    metrics = {k: list(v) for k, v in trainer._metrics["train"].items()}
    return grads, loss, metrics, trainer._total_train_tokens


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def read_events(run_dir: Path) -> list[dict]:
    from engine import events
    return events.read_all(run_dir / "events.jsonl")


def engine_env(home: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(TUNETOP_HOME=str(home), PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for k in ("TUNETOP_FAULT_OOM_TOKENS", "TUNETOP_FAULT_OOM_EVAL_TOKENS", "TUNETOP_FAULT_OOM_STEPS",
              "TUNETOP_FAULT_OOM_OPTIMIZER", "TUNETOP_NO_RELAUNCH", "TUNETOP_RELAUNCH"):
        env.pop(k, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def new_run(profile_path: Path, home: Path) -> Path:
    """A run directory for the profile (what `tunetop run` creates), without starting it."""
    from engine import rundir
    from engine.profile import load
    return rundir.create(load(profile_path), home / "runs")


def run_engine(run_dir: Path, env: dict, resume: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "engine.train", str(run_dir)] + (["--resume"] if resume else [])
    return subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True, timeout=timeout)


def adapter_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def losses(evs: list[dict]) -> dict[int, float]:
    """step -> logged loss (the last event for a step wins: a relaunch replays steps)."""
    return {e["step"]: e["loss"] for e in evs if e["type"] == "step"}


def dump(evs):
    return "\n".join(json.dumps(e) for e in evs)
