"""Merge a run's LoRA adapter into its base model and save plain safetensors weights (merged/).

QLoRA adapters are merged into a 16-bit copy of the base model, not the 4-bit one: merging into
quantised weights would round the adapter away. `python -m engine.train.merge RUN_DIR`.

All or nothing: the merged model is written under .tmp-merged/, checked, fsynced and renamed to merged/.
A missing base model, a truncated adapter or a full disk raise a TunetopError naming the file or the
disk, and leave no merged/ behind (an earlier complete merged/ stays as it was).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .. import checkpoints as ck
from .. import rundir
from ..errors import TunetopError, render_text
from ..profile import ProfileError
from . import faults
from .checkpointing import disk_full, is_enospc


def check_inputs(run_dir: Path, profile) -> Path:
    """The adapter folder, after checking it and the base model without loading any weights."""
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise TunetopError(f"{adapter}: no adapter to merge (adapter_config.json is missing)",
                           hint="only a completed LoRA/QLoRA run has one; a full fine-tune's model/ is already merged")
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise TunetopError(f"{weights} is missing", hint="the run's output is incomplete: resume the run to save it again")
    why = ck.safetensors_problem(weights)
    if why:
        raise TunetopError(f"{weights} {why}", hint="the adapter is damaged: `tunetop resume` saves it again from "
                                                    "the last checkpoint, or restore it from a copy")
    base = Path(profile.model.name_or_path).expanduser()
    looks_local = base.is_absolute() or str(profile.model.name_or_path).startswith((".", "~"))
    if looks_local and not (base / "config.json").is_file():
        raise TunetopError(f"the base model {base} is missing (no config.json there)",
                           hint="put the base model back at that path (model.name_or_path in run.toml)")
    return adapter


def merge_adapter(run_dir: Path) -> Path:
    profile = rundir.load_profile(run_dir)
    adapter = check_inputs(run_dir, profile)
    from .lean_imports import keep_out_bitsandbytes
    keep_out_bitsandbytes()   # the base loads in 16 or 32 bits: bitsandbytes is never used here
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    try:
        base = AutoModelForCausalLM.from_pretrained(profile.model.name_or_path, revision=profile.model.revision,
                                                    trust_remote_code=profile.model.trust_remote_code, dtype=dtype)
    except OSError as exc:
        raise TunetopError(f"cannot load the base model {profile.model.name_or_path}: {str(exc).splitlines()[0]}",
                           hint="download it once (`hf download ID`) or point model.name_or_path in "
                                "run.toml at a local folder") from None
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out = run_dir / "merged"
    tmp = run_dir / ".tmp-merged"
    need = sum(p.numel() * p.element_size() for p in merged.parameters())
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if shutil.disk_usage(run_dir).free < need * 1.05:
            raise disk_full(run_dir, "merged/", need)
        merged.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(tmp))
        for f in tmp.glob("*.safetensors"):
            why = ck.safetensors_problem(f)
            if why:
                raise TunetopError(f"{f} {why} right after writing it", hint="check the disk and merge again")
        ck.fsync_tree(tmp)
        faults.reached("merge:before_rename")
        ck.replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_enospc(exc):
            raise disk_full(run_dir, "merged/", need, exc) from None
        raise TunetopError(f"cannot write {tmp}: {exc.strerror or exc}", hint="check the run directory's disk") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


if __name__ == "__main__":
    try:
        print(merge_adapter(Path(sys.argv[1]).resolve()))
    except (TunetopError, ProfileError, OSError) as exc:
        print(render_text(exc), file=sys.stderr)
        sys.exit(2)
