"""Checkpoints that exist only when complete, and the choice of which one a resume loads (torch-free).

How a checkpoint is written (engine/train/checkpointing.py):

    checkpoints/.tmp-checkpoint-N/checkpoint-N/   the Trainer writes every file here
    fsync each file and the folder, rename to     checkpoints/checkpoint-N/
    write last, atomically                        checkpoints/checkpoint-N/COMPLETE  (JSON manifest)

A folder without COMPLETE (killed before the marker), a staging folder (killed before the rename) and a
checkpoint whose files do not match its manifest (cut short, deleted, overwritten) are not resumable.
transformers alone writes trainer_state.json last and not atomically, so a kill at the wrong moment used to
leave a cut file inside a complete-looking folder that every later resume picked.

`select()` is what `resume` uses: the newest checkpoint whose files load, falling back to older ones with a
note naming the broken file. A missing optimizer state is an error (MissingOptimizerState) unless the
caller allows a fresh optimizer. `last_checkpoint()` is the same choice for readers (rundir, the CLI).

Verification reads headers, never the weights: sizes against the manifest, trainer_state.json parsed, the
zip directory of each torch file (.pt/.pth are zip archives), the JSON header of each safetensors file.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TunetopError

CHECKPOINTS = "checkpoints"
PREFIX = "checkpoint-"
STAGING = ".tmp-checkpoint-"
MARKER = "COMPLETE"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "adapter_model.bin",
           "pytorch_model.bin")


class MissingOptimizerState(TunetopError):
    """The newest good checkpoint has no optimizer state: resuming would silently reset AdamW."""


@dataclass
class Selection:
    path: Path | None                        # the checkpoint to resume from (None: start from step 0)
    notes: list[str] = field(default_factory=list)   # checkpoints passed over, and why (warnings)
    fresh_optimizer: bool = False            # resume with a new optimizer state (--reset-optimizer)

    @property
    def step(self) -> int:
        return step_of(self.path) if self.path else 0


def step_of(folder: Path) -> int:
    tail = folder.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def folder_of(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def candidates(parent: Path) -> list[Path]:
    """checkpoint-N folders (complete or not), newest first."""
    try:
        found = [p for p in parent.iterdir() if p.name.startswith(PREFIX) and step_of(p) >= 0 and p.is_dir()]
    except OSError:
        return []
    return sorted(found, key=step_of, reverse=True)


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def read_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def size_of(folder: Path) -> int:
    """Bytes of a checkpoint (from its manifest when there is one)."""
    manifest = read_manifest(folder)
    if manifest and isinstance(manifest.get("bytes"), int):
        return manifest["bytes"]
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# -- verification -----------------------------------------------------------------------------------------

def problem(folder: Path, allow_missing_optimizer: bool = False) -> tuple[str | None, str | None]:
    """(file, what is wrong) for the first reason this checkpoint cannot be resumed, or (None, None).
    A missing optimizer state is reported as (OPTIMIZER, "missing") so the caller can tell it apart from a
    broken checkpoint; `allow_missing_optimizer` passes over it (a fresh optimizer on purpose)."""
    manifest = read_manifest(folder)
    if manifest is None:
        what = "is missing (the save did not finish)" if not (folder / MARKER).exists() else "cannot be read"
        return MARKER, what
    for name, size in sorted(manifest["files"].items()):
        path = folder / name
        if not path.is_file():
            if name == OPTIMIZER:
                if allow_missing_optimizer:
                    continue
                return OPTIMIZER, "missing"
            return name, "is missing"
        actual = path.stat().st_size
        if isinstance(size, int) and actual != size:
            return name, f"has {actual:,} bytes, the checkpoint recorded {size:,} (cut short or overwritten)"
    try:
        state = json.loads((folder / TRAINER_STATE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
            return TRAINER_STATE, "has no global_step"
    except FileNotFoundError:
        return TRAINER_STATE, "is missing"
    except (OSError, ValueError) as exc:
        return TRAINER_STATE, f"does not parse ({str(exc).splitlines()[0][:120]})"
    if not any((folder / w).is_file() for w in WEIGHTS):
        return WEIGHTS[0], "is missing (no adapter or model weights in the checkpoint)"
    if not (folder / OPTIMIZER).is_file() and not allow_missing_optimizer:
        return OPTIMIZER, "missing"
    if not (folder / SCHEDULER).is_file():
        return SCHEDULER, "is missing"
    if not any(p.name.startswith("rng_state") for p in folder.iterdir()):
        return "rng_state.pth", "is missing"
    for path in sorted(folder.iterdir()):
        why = _file_problem(path)
        if why:
            return path.name, why
    return None, None


def _file_problem(path: Path) -> str | None:
    if path.suffix in (".pt", ".pth", ".bin"):
        try:
            with zipfile.ZipFile(path) as z:
                if not z.namelist():
                    return "is an empty archive"
        except (zipfile.BadZipFile, OSError) as exc:
            return f"is not a readable torch file ({exc})"
    elif path.suffix == ".safetensors":
        return safetensors_problem(path)
    return None


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's header and length, or None (the tensors are not read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "is truncated (no header)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100 << 20:
                return "is truncated (header longer than the file)"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:
        return f"has an unreadable header ({exc})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + n + max(ends, default=0) != size:
        return f"is truncated ({size:,} bytes, the header describes {8 + n + max(ends, default=0):,})"
    return None


def select(run_dir: Path, reset_optimizer: bool = False) -> Selection:
    """The checkpoint a resume should load. Raises MissingOptimizerState (naming the file) when the newest
    good checkpoint lacks its optimizer state and `reset_optimizer` is False."""
    sel = Selection(None)
    for folder in candidates(folder_of(run_dir)):
        name, why = problem(folder)
        if name == OPTIMIZER and why == "missing":
            if not reset_optimizer:
                run = Path(run_dir).name
                raise MissingOptimizerState(
                    f"{folder / OPTIMIZER} is missing: resuming would start AdamW from zero (a silent jump in the "
                    "training)", hint=f"restore the file, or pass --reset-optimizer (`tunetop resume {run} "
                    "--reset-optimizer`) to continue with a fresh optimizer state on purpose")
            name, why = problem(folder, allow_missing_optimizer=True)
            if name is None:
                sel.path, sel.fresh_optimizer = folder, True
                sel.notes.append(f"{folder.name}/{OPTIMIZER} is missing: resuming with a fresh optimizer state "
                                 "(--reset-optimizer)")
                return sel
        if name is None:
            sel.path, sel.fresh_optimizer = folder, reset_optimizer
            return sel
        sel.notes.append(f"{folder.name}/{name} {why}: not resumable, falling back to the previous checkpoint")
    return sel


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest resumable checkpoint (what `resume` would load), or None. Never raises."""
    try:
        return select(run_dir, reset_optimizer=True).path
    except (TunetopError, OSError):
        return None


def max_steps_of(folder: Path) -> tuple[int, int] | None:
    """(global_step, max_steps) recorded in a checkpoint's trainer_state.json."""
    try:
        state = json.loads((folder / TRAINER_STATE).read_text())
        return int(state["global_step"]), int(state.get("max_steps") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- writing ----------------------------------------------------------------------------------------------

def fsync_tree(folder: Path) -> int:
    """fsync every file under `folder` and the folders themselves. Returns the bytes in it."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
        fsync_dir(Path(root))
    return total


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(src: Path, dst: Path) -> None:
    """Put folder `src` at `dst` (same file system), replacing what was there; fsync the parent."""
    old = dst.with_name(f".old-{dst.name}")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.rename(dst, old)
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def write_marker(folder: Path, step: int) -> dict:
    """The completion marker, written last and atomically: the files and sizes the checkpoint holds."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MARKER}
    manifest = {"step": step, "files": files, "bytes": sum(files.values()), "t": round(time.time(), 3)}
    tmp = folder / f".{MARKER}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, folder / MARKER)
    fsync_dir(folder)
    return manifest


def rotate(parent: Path, limit: int | None) -> list[Path]:
    """Keep the `limit` newest complete checkpoints (at least the newest good one, never it); remove older
    ones, unfinished folders older than the newest complete one, and stale staging folders. Returns what
    was removed."""
    removed = []
    complete = [c for c in candidates(parent) if is_complete(c)]
    good = next((c for c in complete if problem(c, allow_missing_optimizer=True)[0] is None), None)
    keep = set(complete[:max(1, limit or len(complete))])
    if good is not None:
        keep.add(good)
    newest = step_of(complete[0]) if complete else -1
    for c in candidates(parent):
        if c in keep:
            continue
        if is_complete(c) or step_of(c) < newest:
            shutil.rmtree(c, ignore_errors=True)
            removed.append(c)
    for p in parent.glob(f"{STAGING}*"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def mount_point(path: Path) -> Path:
    """The mount point holding `path` (what a "disk full" message names)."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    dev = os.stat(path).st_dev
    while path != path.parent and os.stat(path.parent).st_dev == dev:
        path = path.parent
    return path
