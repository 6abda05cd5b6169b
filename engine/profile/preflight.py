"""Checks that need the disk, not just the profile text: does the model exist, does the data exist, does
max_seq_len fit the model's context. Light (reads config.json as JSON), so `tunetop run` and the form can
refuse a doomed launch before a process is started."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..estimate.config_source import cached_config
from .schema import Profile
from .validate import Problem, ProfileError


def model_config(profile: Profile) -> tuple[dict | None, Problem | None]:
    """The model's config.json (local folder or HF cache) or the problem that makes the model unusable."""
    ref = profile.model.name_or_path
    path = Path(ref)
    if path.is_absolute():
        cfg = path / "config.json"
        if not path.exists():
            return None, Problem("model.name_or_path", f"{ref} does not exist",
                                 "point it at a folder saved with save_pretrained, or use a hub id")
        if not cfg.exists():
            return None, Problem("model.name_or_path", f"{ref} is not a model folder (no config.json in it)",
                                 "point it at the folder that holds config.json and the weights")
        return _read_json(cfg), None
    revision = profile.model.revision if profile.model.revision != "main" else None
    cached = cached_config(ref, revision)
    if cached is not None:
        return cached.config, None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None, Problem("model.name_or_path", f'"{ref}" is not in the Hugging Face cache and HF_HUB_OFFLINE '
                             "is set, so it cannot be downloaded",
                             f"download it once with network access (`hf download {ref}`), "
                             "or point name_or_path at a local folder")
    return None, None  # will be downloaded by the engine


def check(profile: Profile) -> None:
    """Raise ProfileError with every problem found on disk."""
    problems = []
    config, problem = model_config(profile)
    if problem:
        problems.append(problem)
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


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
