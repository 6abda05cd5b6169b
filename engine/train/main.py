"""The training engine's entry point: `python -m engine.train RUN_DIR [--resume]`.

Read it top to bottom: frozen profile -> data (checked before any model is loaded) -> tokenizer ->
tokens -> model -> trainer -> train (or resume) -> save -> `end` event. Every outcome ends with exactly
one `end` event: completed, stopped (SIGTERM/SIGINT, resumable) or failed (with the error and a hint).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from .. import rundir
from ..data import DataError, load_data
from ..events import EventWriter
from ..profile import ProfileError, preflight
from .backoff import OOMExhausted, RelaunchRequest, loader_batch
from .errors import SetupError
from .stop import StopRequest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.train")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()

    stop = StopRequest()
    stop.install()
    writer = EventWriter(run_dir / rundir.EVENTS)
    t0 = time.time()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        rundir.write_pid(run_dir, os.getpid())
    try:
        result = train(run_dir, args.resume, writer, stop)
        if rank0:
            writer.write("end", runtime_s=round(time.time() - t0, 2), **result)
        return 0
    except (ProfileError, DataError, SetupError) as exc:
        message, hint = _split_hint(str(exc), getattr(exc, "hint", ""))
        _fail(writer, message, hint, t0)
        return 2
    except OOMExhausted as exc:  # every OOM backoff was tried; the last completed step is checkpointed
        _fail(writer, str(exc), exc.hint, t0)
        return exc.exit_status
    except RelaunchRequest as exc:  # an OOM outside the step: re-exec with --resume at the next size
        return exc.execute(writer if rank0 else None)
    except Exception as exc:  # the run must always end with an event, whatever broke
        traceback.print_exc()
        message, hint = _explain(exc)
        _fail(writer, message, hint, t0)
        return 1
    finally:
        writer.close()


def train(run_dir: Path, resume: bool, writer: EventWriter, stop: StopRequest) -> dict:
    profile = rundir.load_profile(run_dir)
    if int(os.environ.get("RANK", "0")) == 0:   # notifications and the stall watchdog (engine/notify)
        from .. import notify
        notify.attach(writer, run_dir, profile)
    preflight.check(profile)   # model exists, data exists, max_seq_len within the model's context
    log = lambda message, level="info": writer.write("log", level=level, message=message)  # noqa: E731

    # 1. Data first: a dataset with no usable rows fails in a second, before any model is loaded.
    report = load_data(profile.data)
    log(report.summary(), "warning" if report.bad_rows else "info")

    # 2. Heavy imports only now, so a bad profile or dataset is reported without waiting for torch.
    import torch
    from trl import SFTConfig

    from .callbacks import EventCallback, GracefulStop
    from .model import load_model, load_tokenizer, pick_placement, trainable_summary
    from .tokenize import ensure_chat_template, tokenize_rows
    from .trainer import TunetopTrainer

    placement = pick_placement(profile.training.precision)
    tokenizer = load_tokenizer(profile.model.name_or_path, profile.model.revision, profile.model.trust_remote_code)
    if report.format != "text" and ensure_chat_template(tokenizer):
        log("the tokenizer has no chat template; using tunetop's ChatML fallback (<|im_start|>role ... <|im_end|>)",
            "warning")

    # 3. Tokens: chat template applied, assistant replies marked as the part the loss learns from.
    t = profile.training
    train_tok = tokenize_rows(tokenizer, report.train, t.max_seq_len, t.completion_only_loss)
    eval_tok = tokenize_rows(tokenizer, report.eval, t.max_seq_len, t.completion_only_loss) if report.eval else None
    if train_tok.truncated or train_tok.dropped:
        log(f"{train_tok.truncated} rows longer than max_seq_len={t.max_seq_len} were truncated; "
            f"{train_tok.dropped} rows had nothing left to learn from and were dropped", "warning")
    if not train_tok.rows:
        raise DataError(f"{report.sources[0]}: no row has a trainable token after tokenizing\n"
                        "  hint: raise training.max_seq_len or check the dataset's answers are not empty")

    if stop.requested:
        return {"status": "stopped", "step": 0, "error": None, "hint": "stopped before training began"}

    # 4. Model: 4-bit + LoRA, 16-bit + LoRA, or every weight.
    torch.manual_seed(t.seed)
    model = load_model(profile, placement)
    trainable, total = trainable_summary(model)
    log(f"model {profile.model.name_or_path}: {profile.method.type}, {trainable:,} of {total:,} parameters "
        f"trainable, {placement.device} {placement.precision}")

    # "auto": the loader holds the effective batch; the probe before step 1 picks the rows per pass.
    micro_batch, grad_accum = loader_batch(t)
    from datasets import Dataset
    train_ds = Dataset.from_list(train_tok.rows)
    eval_ds = Dataset.from_list(eval_tok.rows) if eval_tok and eval_tok.rows else None
    config = SFTConfig(
        output_dir=str(run_dir / rundir.CHECKPOINTS),
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm or None,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if (t.eval_steps and eval_ds is not None) else "no",
        eval_steps=t.eval_steps or None,
        bf16=placement.precision == "bf16",
        fp16=placement.precision == "fp16",
        use_cpu=placement.device == "cpu",
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        optim=_optimizer(t.optimizer, placement, log),
        seed=t.seed,
        data_seed=t.seed,
        max_length=t.max_seq_len,
        packing=t.packing and report.format != "text",  # raw text is already cut into full blocks
        completion_only_loss=t.completion_only_loss,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
        dataloader_num_workers=0,
    )
    effective = micro_batch * grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    events = EventCallback(writer, effective)
    trainer = TunetopTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, callbacks=[events, GracefulStop(stop)],
                             profile=profile, run_dir=run_dir, writer=writer)
    from .nan_guard import install as install_nan_guard
    install_nan_guard(trainer, writer, t.on_nan)   # NaN/inf loss: stop before the optimizer step (or warn)

    checkpoint = rundir.last_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        log("no checkpoint to resume from: starting this run again from step 0", "warning")
    events.start_info = dict(
        run_id=run_dir.name, profile=profile.name, model=profile.model.name_or_path, method=profile.method.type,
        device=placement.device, devices=placement.devices, precision=placement.precision,
        world_size=int(os.environ.get("WORLD_SIZE", "1")), micro_batch=micro_batch, grad_accum=grad_accum,
        effective_batch=effective, epochs=t.epochs, data_format=report.format, train_rows=len(train_ds),
        eval_rows=len(eval_ds) if eval_ds is not None else 0, skipped_rows=len(report.bad_rows),
        train_tokens=train_tok.tokens, trainable_params=trainable, total_params=total)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    state = trainer.state
    final_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)

    if stop.requested and state.global_step < state.max_steps:
        log(f"stopped on {stop.signal_name} at step {state.global_step}; resumable checkpoint saved")
        return {"status": "stopped", "step": state.global_step, "total_steps": state.max_steps,
                "final_loss": final_loss, "error": None, "hint": f"`tunetop resume {run_dir.name}` continues it"}

    # 5. Results: the adapter in PEFT format (or the full model), and evaluation when not done on the way.
    if eval_ds is not None and not t.eval_steps:
        trainer.evaluate()
    out_dir = run_dir / ("model" if profile.method.type == "full" else "adapter")
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    log(f"saved {out_dir.name}/ ({_size_mb(out_dir):.1f} MB)")
    if profile.output.merge and profile.method.type != "full":
        from .merge import merge_adapter
        del trainer, model
        merged = merge_adapter(run_dir)
        log(f"saved the merged model to {merged.name}/ ({_size_mb(merged):.1f} MB)")
    return {"status": "completed", "step": state.global_step, "total_steps": state.max_steps,
            "final_loss": final_loss, "error": None, "hint": None, "adapter_path": out_dir.name}


def _optimizer(name: str, placement, log) -> str:
    # bitsandbytes' paged optimizers page state to host memory through CUDA unified memory: GPU only.
    if placement.device == "cpu" and name.startswith("paged_"):
        log(f"optimizer {name} needs a GPU; using adamw_torch on CPU", "warning")
        return "adamw_torch"
    return name


def _explain(exc: BaseException) -> tuple[str, str]:
    import torch
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if isinstance(exc, torch.OutOfMemoryError):
        return text, ("the GPU ran out of memory: lower training.micro_batch and raise grad_accum by the same "
                      "factor, turn on gradient_checkpointing, or use method qlora")
    if isinstance(exc, OSError) and ("does not appear to have" in str(exc) or "offline" in str(exc).lower()
                                     or "not found" in str(exc).lower()):
        return text, ("the model could not be found locally or in the Hugging Face cache: download it once "
                      "(`huggingface-cli download ID`) or set model.name_or_path to a local folder")
    return text, "see engine.log in the run directory for the full traceback"


def _split_hint(message: str, hint: str) -> tuple[str, str]:
    if not hint and "\n  hint: " in message:
        message, hint = message.split("\n  hint: ", 1)
    return message, hint


def _fail(writer: EventWriter, message: str, hint: str, t0: float) -> None:
    print(f"error: {message}\n  hint: {hint}", file=sys.stderr)
    writer.write("end", status="failed", error=message, hint=hint, runtime_s=round(time.time() - t0, 2))


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
