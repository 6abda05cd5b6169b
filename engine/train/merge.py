"""Merge a run's LoRA adapter into its base model and save plain safetensors weights (merged/).

QLoRA adapters are merged into a 16-bit copy of the base model, not the 4-bit one: merging into
quantised weights would round the adapter away. `python -m engine.train.merge RUN_DIR`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .. import rundir


def merge_adapter(run_dir: Path) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    profile = rundir.load_profile(run_dir)
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter}: no adapter to merge (the run has not completed, or it was a full "
                                "fine-tune whose model/ is already complete)")
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(profile.model.name_or_path, revision=profile.model.revision,
                                                trust_remote_code=profile.model.trust_remote_code, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out = run_dir / "merged"
    merged.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(out))
    return out


if __name__ == "__main__":
    try:
        print(merge_adapter(Path(sys.argv[1]).resolve()))
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
