"""The training engine's entry point:
`python -m engine.train RUN_DIR [--resume] [--reset-optimizer] [--accept-changed-data]`.

Read it top to bottom: the run's lock (or exit at once, writing nothing) -> frozen profile -> fingerprint
of the data -> data (checked before any model is loaded) -> tokenizer -> tokens -> model -> trainer ->
train (or resume from the newest good checkpoint) -> save the output atomically -> `end` event. Every
outcome ends with exactly one `end` event: completed, stopped (SIGTERM/SIGINT, resumable) or failed (with
the error and a hint); two exceptions write nothing at all: another engine holds the run (exit 4), and
the run directory was deleted or moved while training (exit 1). engine/train/guard.py says why.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import traceback
from pathlib import Path

from .. import rundir
from ..data import DataError, load_data
from ..errors import TunetopError, render_text
from ..events import EventWriter
from ..profile import ProfileError, preflight
from .. import checkpoints as ck
from .. import runlock
from . import distributed_setup, fingerprint
from .backoff import OOMExhausted, RelaunchRequest, loader_batch
from .guard import EXIT_LOCKED, RunDirGone, RunGuard
from .stop import StopRequest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.train")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--reset-optimizer", action="store_true",
                        help="resume even though the checkpoint has no optimizer state (a fresh one)")
    parser.add_argument("--accept-changed-data", action="store_true",
                        help="resume even though the dataset files or run.toml changed since the run started")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()

    # One engine per run directory: without the lock nothing is written, not even an event.
    # The heartbeat comes from the rank that writes this machine's run directory (distributed_setup.py).
    guard = RunGuard(run_dir, rank0=distributed_setup.ranks().writes_events)
    try:
        guard.take_lock()
    except runlock.LockBusy:
        print(f"error: another engine is running on {run_dir} (it holds {run_dir / runlock.LOCK}); "
              "this one exits without touching the run", file=sys.stderr)
        return EXIT_LOCKED
    except OSError as exc:
        print(f"error: cannot lock the run directory {run_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2

    stop = StopRequest()
    stop.install()
    ranks = distributed_setup.setup(run_dir)   # several processes: who writes what (distributed_setup.py)
    writer = distributed_setup.event_writer(run_dir)
    t0 = time.time()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0 and not ranks.torchrun:   # under torchrun the launcher recorded the agent's pid
        rundir.write_pid(run_dir, os.getpid())
    guard.start_heartbeat()
    guard.reserve()
    try:
        result = train(run_dir, args, writer, stop, guard)
        guard.check()
        if ranks.writes_events:
            guard.release_reserve()
            writer.write("end", runtime_s=round(time.time() - t0, 2), **result)
        return 0
    except RunDirGone as exc:   # deleted or moved: write nothing, by path or otherwise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OOMExhausted as exc:  # every OOM backoff was tried; the last completed step is checkpointed
        _fail(writer, exc.message, exc.hint, t0, guard)
        return exc.exit_status
    except (TunetopError, ProfileError, DataError) as exc:   # profile, data, setup: what to change is in the hint
        _fail(writer, getattr(exc, "message", None) or str(exc), getattr(exc, "hint", ""), t0, guard)
        return getattr(exc, "exit_code", 2)
    except RelaunchRequest as exc:  # an OOM outside the step: re-exec with --resume at the next size
        guard.keep_lock_across_exec(os.environ)   # the same pid keeps the run's lock through the exec
        return exc.execute(writer if rank0 else None)
    except Exception as exc:  # the run must always end with an event, whatever broke
        traceback.print_exc()
        if distributed_setup.peer_lost(exc):   # another rank died: interrupted and resumable, not failed
            print(f"rank {ranks.rank}: lost the other ranks ({exc}); leaving without an end event", file=sys.stderr)
            distributed_setup.leave_now(1)
        if guard.gone():
            print(f"error: the run directory {run_dir} is gone; nothing more is written", file=sys.stderr)
            return 1
        message, hint = _explain(exc, run_dir)
        _fail(writer, message, hint, t0, guard)
        return 1
    finally:
        guard.stop_heartbeat()
        try:
            writer.close()
        except OSError:   # a full disk refused the last buffered bytes; the end event went through a fresh handle
            pass


def train(run_dir: Path, args, writer: EventWriter, stop: StopRequest, guard: RunGuard) -> dict:
    resume = args.resume
    profile = rundir.load_profile(run_dir)
    if int(os.environ.get("RANK", "0")) == 0:   # notifications and the stall watchdog (engine/notify)
        from .. import notify
        notify.attach(writer, run_dir, profile)
    preflight.check(profile)   # model exists, data exists, max_seq_len within the model's context
    log = lambda message, level="info": writer.write("log", level=level, message=message)  # noqa: E731
    if guard.rank0:   # what the run trains on; a resume with other data is refused (fingerprint.py)
        fingerprint.check(run_dir, profile, resume, args.accept_changed_data, log)
    # The checkpoint to resume from, chosen before any model is loaded: a missing optimizer state fails now.
    selection = ck.select(run_dir, reset_optimizer=args.reset_optimizer) if resume else ck.Selection(None)
    for note in selection.notes:
        log(note, "warning")

    # 1. Data first: a dataset with no usable rows fails in a second, before any model is loaded.
    report = load_data(profile.data)
    log(report.summary(), "warning" if report.bad_rows else "info")

    # 2. Heavy imports only now, so a bad profile or dataset is reported without waiting for torch; without
    #    bitsandbytes when this run does not use it (lean_imports.py: 1.3-1.5 s of start-up).
    from . import lean_imports
    lean_imports.for_run(profile)
    import torch

    from .callbacks import EventCallback, GracefulStop, RunDirWatch
    from .checkpointing import save_output
    from .model import load_model, load_tokenizer, pick_placement, trainable_summary
    from .sft_config import build_sft_config
    from .tokenize import ensure_chat_template, tokenize_data
    from .trainer import TunetopTrainer

    placement = pick_placement(profile.training.precision)
    tokenizer = load_tokenizer(profile.model.name_or_path, profile.model.revision, profile.model.trust_remote_code)
    if report.format != "text" and ensure_chat_template(tokenizer):
        log("the tokenizer has no chat template; using tunetop's ChatML fallback (<|im_start|>role ... <|im_end|>)",
            "warning")

    # 3. Tokens: chat template applied, assistant replies marked as the part the loss learns from.
    t = profile.training
    train_tok, eval_tok = tokenize_data(tokenizer, report, profile, log)   # logs counts; refuses unusable data

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
    config = build_sft_config(profile, run_dir / rundir.CHECKPOINTS, placement, micro_batch=micro_batch,
                              grad_accum=grad_accum, data_format=report.format, has_eval=eval_ds is not None,
                              log=log, **distributed_setup.sft_overrides(model, placement))
    effective = micro_batch * grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    events = EventCallback(writer, effective)
    trainer = TunetopTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer,
                             callbacks=[*distributed_setup.callbacks(events, GracefulStop(stop), stop, writer),
                                        RunDirWatch(guard)],
                             profile=profile, run_dir=run_dir, writer=writer)
    from .nan_guard import install as install_nan_guard
    install_nan_guard(trainer, writer, t.on_nan)   # NaN/inf loss: stop before the optimizer step (or warn)
    distributed_setup.attach(trainer, stop)        # last: the ranks agree on what the callbacks decided

    checkpoint = selection.path
    trainer._tt_reset_optimizer = selection.fresh_optimizer
    trainer.tt_guard = guard
    if resume and checkpoint is None:
        log("no checkpoint to resume from: starting this run again from step 0", "warning")
    if guard.rank0:
        log(trainer.space_note())
    events.start_info = dict(
        run_id=run_dir.name, profile=profile.name, model=profile.model.name_or_path, method=profile.method.type,
        device=placement.device, devices=placement.devices, precision=placement.precision,
        world_size=int(os.environ.get("WORLD_SIZE", "1")), micro_batch=micro_batch, grad_accum=grad_accum,
        effective_batch=effective, epochs=t.epochs, data_format=report.format, train_rows=len(train_ds),
        eval_rows=len(eval_ds) if eval_ds is not None else 0, skipped_rows=report.bad_count + len(train_tok.skipped),
        train_tokens=train_tok.tokens, trainable_params=trainable, total_params=total)
    events.start_info.update(distributed_setup.start_fields(trainer.args.device))   # every rank's device
    if resume:
        distributed_setup.check_world_change(run_dir, trainer.args.world_size, events.start_info["strategy"], log)
    # What exists now lives for the whole run (the libraries, the model, the datasets): after one collection
    # it is frozen out of the collector's reach, so the full collections that the OOM handling (release())
    # and accelerate (free_memory) make scan only what training creates. Each scanned everything before:
    # 0.3-0.5 s apiece on the 2-core CPU, three of them before step 1.
    gc.collect()
    gc.freeze()
    done = ck.max_steps_of(checkpoint) if checkpoint else None
    if done and done[1] and done[0] >= done[1]:
        # The run died after its final checkpoint: its output is saved from that checkpoint, no step trained.
        trainer._load_from_checkpoint(str(checkpoint))
        trainer.state = trainer.state.load_from_json(str(checkpoint / ck.TRAINER_STATE))
        writer.write("start", total_steps=done[1], resumed_from=done[0], **events.start_info)
        log(f"{checkpoint.name} is the final step ({done[0]} of {done[1]}): saving the output from it, "
            "training no further step")
    else:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    guard.check()
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
    guard.check()
    save_output(trainer, tokenizer, out_dir)   # under .tmp-NAME, fsynced, renamed: never half an adapter
    if trainer.is_world_process_zero():
        log(f"saved {out_dir.name}/ ({_size_mb(out_dir):.1f} MB)")
    if profile.output.merge and profile.method.type != "full":
        from .merge import merge_adapter
        del trainer, model
        merged = merge_adapter(run_dir)
        log(f"saved the merged model to {merged.name}/ ({_size_mb(merged):.1f} MB)")
    return {"status": "completed", "step": state.global_step, "total_steps": state.max_steps,
            "final_loss": final_loss, "error": None, "hint": None, "adapter_path": out_dir.name}


def _explain(exc: BaseException, run_dir: Path) -> tuple[str, str]:
    import torch

    from .checkpointing import disk_full, is_enospc
    if is_enospc(exc):   # outside a checkpoint (an event, a log line): name the disk all the same
        full = disk_full(run_dir, "the run's files", None, exc)
        return full.message, full.hint
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if isinstance(exc, torch.OutOfMemoryError):
        return text, ("the GPU ran out of memory: lower training.micro_batch and raise grad_accum by the same "
                      "factor, turn on gradient_checkpointing, or use method qlora")
    if isinstance(exc, OSError) and ("does not appear to have" in str(exc) or "offline" in str(exc).lower()
                                     or "not found" in str(exc).lower()):
        return text, ("the model could not be found locally or in the Hugging Face cache: download it once "
                      "(`hf download ID`) or set model.name_or_path to a local folder")
    return text, "see engine.log in the run directory for the full traceback"


def _fail(writer: EventWriter, message: str, hint: str, t0: float, guard: RunGuard) -> None:
    print(render_text(TunetopError(message, hint)), file=sys.stderr)
    guard.release_reserve()   # a full disk still records the final state
    fields = dict(status="failed", error=message, hint=hint, runtime_s=round(time.time() - t0, 2))
    try:
        writer.write("end", **fields)
    except OSError:   # the writer's buffer holds a line the full disk refused: a fresh handle, once
        _discard(writer)
        EventWriter(writer.path).write("end", **fields)


def _discard(writer: EventWriter) -> None:
    """Drop what the writer still buffers (nothing may be written by a gone or full run directory)."""
    f = getattr(writer, "_f", None)
    if f is not None:
        try:
            os.close(f.fileno())
        except OSError:
            pass


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
