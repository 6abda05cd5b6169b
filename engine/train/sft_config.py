"""The one place a profile becomes trl's SFTConfig (the engine and the in-process tests both call it).

Every choice tunetop makes for the Trainer is here: checkpoints every save_steps into checkpoints/ (written
atomically by checkpointing.py), precision from the placement (bf16 and gradient checkpointing set
explicitly: trl 1.16 turns both on by default, and bf16 autocast on CPU is about 9x slower), token counts
without padding, no tqdm, no reporting, the dataloader in the engine's own process.
"""
from __future__ import annotations

from pathlib import Path


def build_sft_config(profile, output_dir: str | Path, placement, *, micro_batch: int, grad_accum: int,
                     data_format: str = "messages", has_eval: bool = False, log=None, **overrides):
    """trl.SFTConfig for `profile` on `placement`. `micro_batch`/`grad_accum` are the dataloader's (see
    backoff.loader_batch); `overrides` replace single fields (tests and benchmarks)."""
    from trl import SFTConfig

    t = profile.training
    fields = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,   # a float below 1 is a share of the steps in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm or None,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if (t.eval_steps and has_eval) else "no",
        eval_steps=t.eval_steps or None,
        bf16=placement.precision == "bf16",
        fp16=placement.precision == "fp16",
        use_cpu=placement.device == "cpu",
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        optim=optimizer_name(t.optimizer, placement, log),
        seed=t.seed,
        data_seed=t.seed,
        max_length=t.max_seq_len,
        packing=t.packing and data_format != "text",  # raw text is already cut into full blocks
        completion_only_loss=t.completion_only_loss,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
        dataloader_num_workers=0,
    )
    fields.update(overrides)
    return SFTConfig(**fields)


def optimizer_name(name: str, placement, log=None) -> str:
    # bitsandbytes' paged optimizers page state to host memory through CUDA unified memory: GPU only.
    if placement.device == "cpu" and name.startswith("paged_"):
        if log is not None:
            log(f"optimizer {name} needs a GPU; using adamw_torch on CPU", "warning")
        return "adamw_torch"
    return name
