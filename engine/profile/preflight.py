"""Checks that need the disk, not just the profile text: does the model exist and is its folder whole
(model_files.py: config, tokenizer, weights, from headers only), does the data exist, does max_seq_len fit
the model's context. Light (reads config.json as JSON), so `tunetop run` and the form can refuse a doomed
launch before a process is started."""
from __future__ import annotations

import os
from pathlib import Path

from ..estimate.config_source import resolve
from . import model_files
from .schema import Profile
from .validate import Problem, ProfileError


def model_config(profile: Profile) -> tuple[dict | None, list[Problem]]:
    """The model's config.json on disk (local folder or HF cache) or the problem(s) that make the model
    unusable. The finding is engine.estimate.config_source.resolve's, the one resolver the estimate uses too;
    a local folder is first checked whole (model_files), which also keeps FIFOs and devices unopened."""
    ref = profile.model.name_or_path
    folder = Path(ref).expanduser()
    if folder.is_absolute() and folder.is_dir():
        broken = model_files.folder_problems(folder)
        if broken:
            return None, broken
    found = resolve(ref, profile.model.revision)
    if found.kind == "missing-path":
        return None, [Problem("model.name_or_path", found.problem, found.hint)]
    if found.kind == "not-a-model":
        return None, [Problem("model.name_or_path", f"{ref} is not a model folder (no config.json in it)",
                              "point it at the folder that holds config.json and the weights")]
    if found.on_disk:
        return found.config, []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None, [Problem("model.name_or_path", f'"{ref}" is not in the Hugging Face cache and HF_HUB_OFFLINE '
                              "is set, so it cannot be downloaded",
                              f"download it once with network access (`hf download {ref}`), "
                              "or point name_or_path at a local folder")]
    return None, []  # will be downloaded by the engine


def _moe_dropout(profile: Profile, config: dict | None) -> Problem | None:
    """peft's ParamWrapper (LoRA on transformers 5's fused experts) refuses lora_dropout != 0: catch it here,
    not at setup. The architecture is enough, so the bundled table answers for a model not downloaded yet."""
    m = profile.method
    if m.type == "full" or not m.lora_dropout:
        return None
    if config is None:
        config = resolve(profile.model.name_or_path, profile.model.revision).config
    if config is None:
        return None
    from ..estimate.targets import experts_targeted
    try:
        hit = experts_targeted(config, m.target_modules)
    except ValueError:
        return None  # unknown architecture or target names: the engine's own error will say which
    if not hit:
        return None
    return Problem("method.lora_dropout", f"{m.lora_dropout} with LoRA on the experts of this mixture-of-experts "
                   f"model ({hit}): peft's expert adapters refuse dropout",
                   'set lora_dropout = 0, or list target_modules without the experts, e.g. '
                   '["q_proj", "k_proj", "v_proj", "o_proj"] (attention only)')


def check(profile: Profile) -> None:
    """Raise ProfileError with every problem found on disk."""
    problems = []
    config, model_problems = model_config(profile)
    problems.extend(model_problems)
    moe = None if model_problems else _moe_dropout(profile, config)
    if moe:
        problems.append(moe)
    if config:
        context = config.get("max_position_embeddings")
        if isinstance(context, int) and profile.training.max_seq_len > context:
            problems.append(Problem("training.max_seq_len", f"{profile.training.max_seq_len} is beyond the model's "
                                    f"context of {context} tokens", f"set max_seq_len to {context} or less"))
    for ref in (profile.data.path if isinstance(profile.data.path, list) else [profile.data.path]):
        p = Path(ref)
        if p.is_absolute() and not p.exists():
            problems.append(Problem("data.path", f"{ref} does not exist",
                                    "check the path (relative paths are relative to the profile file)"))
    if problems:
        raise ProfileError(problems, profile.source)
