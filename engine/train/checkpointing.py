"""Checkpoints and the final output, written so that a kill or a full disk never leaves a lie on disk
(CheckpointMixin, part of TunetopTrainer; the pure rules live in engine/checkpoints.py).

A checkpoint: the Trainer writes every file into checkpoints/.tmp-checkpoint-N/checkpoint-N (our
_get_output_dir points it there), then tunetop_backoff.json is added, everything is fsynced, the folder is
renamed to checkpoints/checkpoint-N and the COMPLETE marker (a manifest of files and sizes) is written
last. Only then do the `checkpoint` event and the rotation (save_total_limit) happen, and the rotation
never removes the newest good checkpoint. The named points of faults.py sit between these stages.

Disk space: before each checkpoint the free space is compared with its expected size (the last
checkpoint's, or an estimate from the parameter counts before the first); too little, or an ENOSPC while
writing, ends the run `failed` (DiskFull) naming the disk and the space needed, with the unfinished folder
removed and the previous checkpoint untouched.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

from .. import checkpoints as ck
from ..errors import TunetopError
from . import faults
from .guard import RESERVE_BYTES

SLACK = 4 << 20         # tokenizer files, trainer state, RNG: a few MB beyond the tensors


class DiskFull(TunetopError):
    exit_code = 1


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def disk_full(where: Path, what: str, needed: int | None, exc: BaseException | None = None) -> DiskFull:
    mount = ck.mount_point(where)
    free = shutil.disk_usage(mount).free if mount.exists() else 0
    need = f"needs about {gb(needed)}, " if needed else ""
    cause = f" ({exc.strerror or exc})" if isinstance(exc, OSError) else ""
    return DiskFull(f"no space left on {mount} for {what}{cause}: it {need}{gb(free)} free",
                    hint=f"free space on {mount} (or set TUNETOP_HOME / output.runs_root to a larger disk), then "
                         "`tunetop resume RUN` continues from the last complete checkpoint")


def is_enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class CheckpointMixin:
    _tt_staging: Path | None = None
    _tt_reset_optimizer = False
    _tt_checkpoint_bytes: int | None = None

    # -- where the Trainer writes ----------------------------------------------------------------------------

    def _get_output_dir(self, trial):
        if self._tt_staging is not None:
            return str(self._tt_staging)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        where, self._where = self._where, "saving a checkpoint"
        step = self.state.global_step
        parent = Path(super()._get_output_dir(trial))
        guard = getattr(self, "tt_guard", None)
        if guard is not None:
            guard.check()   # a deleted run directory must not be recreated by the save below
        staging = parent / f"{ck.STAGING}{step}"
        written = staging / f"{ck.PREFIX}{step}"
        try:
            if self.args.should_save:
                parent.mkdir(exist_ok=True)   # never parents=True: that would rebuild a deleted run directory
                self._check_space(parent, step)
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir()
            self.accelerator.wait_for_everyone()
            self._tt_staging = staging
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._tt_staging = None
            faults.reached("checkpoint:trainer_state", step)
            self._write_state(written)
            faults.reached("checkpoint:backoff", step)
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                self._commit(written, parent / f"{ck.PREFIX}{step}", step)
        except OSError as exc:
            if not is_enospc(exc):
                raise
            shutil.rmtree(staging, ignore_errors=True)   # room for the end event; the previous one is intact
            raise disk_full(parent, f"checkpoint-{step}", self._expected_checkpoint_bytes(), exc) from None
        finally:
            self._where = where
        if self.args.should_save:
            ck.rotate(parent, self.args.save_total_limit)

    def _commit(self, written: Path, final: Path, step: int) -> None:
        self._tt_checkpoint_bytes = ck.fsync_tree(written)
        faults.reached("checkpoint:before_rename", step)
        ck.replace_dir(written, final)
        shutil.rmtree(written.parent, ignore_errors=True)
        faults.reached("checkpoint:before_marker", step)
        ck.write_marker(final, step)
        faults.reached("checkpoint:done", step)

    # the Trainer's own writes, with the fault points between them
    def save_model(self, output_dir=None, _internal_call=False):
        super().save_model(output_dir, _internal_call)
        if self._tt_staging is not None:
            faults.reached("checkpoint:model", self.state.global_step)

    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        faults.reached("checkpoint:optimizer", self.state.global_step)

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        faults.reached("checkpoint:rng", self.state.global_step)

    def _write_state(self, folder: Path) -> None:
        import copy

        from . import backoff as bk
        if self.args.should_save and folder.is_dir():
            state = copy.deepcopy(self.bo)
            state.step = self.state.global_step
            bk.write_json(folder / bk.STATE_FILE, state.to_json())

    # -- loading -----------------------------------------------------------------------------------------

    def _load_optimizer_and_scheduler(self, checkpoint):
        """--reset-optimizer: a fresh optimizer state on purpose, but the LR schedule goes on where it was."""
        if checkpoint and self._tt_reset_optimizer:
            import torch
            sched = Path(checkpoint) / ck.SCHEDULER
            if sched.is_file():
                self.lr_scheduler.load_state_dict(torch.load(sched, weights_only=True))
            return
        return super()._load_optimizer_and_scheduler(checkpoint)

    # -- disk space --------------------------------------------------------------------------------------

    def _expected_checkpoint_bytes(self) -> int:
        if self._tt_checkpoint_bytes:
            return self._tt_checkpoint_bytes
        parent = Path(super()._get_output_dir(None))
        done = [c for c in ck.candidates(parent) if ck.is_complete(c)]
        if done:
            return ck.size_of(done[0])
        full = not any(p.requires_grad is False for p in self.model.parameters())
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters() if full or p.requires_grad)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        name = str(getattr(self.args.optim, "value", self.args.optim)).lower()
        state = trainable * (2 if "8bit" in name else 0 if name == "sgd" else 8)
        return weights + state + SLACK

    def space_note(self) -> str:
        """One line for the log at start: what each checkpoint needs and what the disk has."""
        parent = Path(super()._get_output_dir(None))
        mount = ck.mount_point(parent)
        need = self._expected_checkpoint_bytes()
        free = shutil.disk_usage(mount).free
        return (f"each checkpoint needs about {gb(need)} on {mount} ({gb(free)} free, "
                f"save_total_limit = {self.args.save_total_limit} kept)")

    def _check_space(self, parent: Path, step: int) -> None:
        need = self._expected_checkpoint_bytes()
        free = shutil.disk_usage(parent).free
        if free < need * 1.05 + RESERVE_BYTES:   # the end event's reserve stays untouched
            raise disk_full(parent, f"checkpoint-{step}", need)


# -- the final output ---------------------------------------------------------------------------------------

def save_output(trainer, tokenizer, out_dir: Path) -> None:
    """adapter/ (or model/) written under .tmp-NAME, fsynced and renamed into place; every rank calls it."""
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")
    main = trainer.is_world_process_zero()
    try:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(tmp))
        faults.reached("output:model")
        if main:
            tokenizer.save_pretrained(str(tmp))
            faults.reached("output:tokenizer")
            _check_output(tmp)
            ck.fsync_tree(tmp)
            faults.reached("output:before_rename")
            ck.replace_dir(tmp, out_dir)
            faults.reached("output:done")
    except OSError as exc:
        if not is_enospc(exc):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_full(out_dir.parent, f"the final {out_dir.name}/", None, exc) from None
    trainer.accelerator.wait_for_everyone()


def _check_output(folder: Path) -> None:
    weights = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
    if not weights:
        raise TunetopError(f"{folder}: the saved output has no .safetensors weights", hint="see engine.log")
    for p in weights:
        why = ck.safetensors_problem(p)
        if why:
            raise TunetopError(f"{p} {why} right after saving it", hint="check the disk (dmesg) and resume")
