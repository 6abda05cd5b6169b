"""A profile's model as the estimator sees it: engine.estimate.find_config (a local folder, the Hugging
Face cache, then the bundled table), wrapped so that "unavailable" is a value with a reason, not an
exception: the builder shows it and still allows a launch (the engine downloads the model).

The one thing added here: a local path that does not exist gets its own message (find_config would
report it as an unknown hub id).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..estimate import EstimateUnavailable, find_config


@dataclass(frozen=True)
class ModelConfig:
    config: dict | None      # the parsed config.json, or None when unavailable
    origin: str              # where it came from (find_config's description), or ""
    problem: str = ""        # why it is unavailable (empty when config is set)
    hint: str = ""


def resolve_config(name_or_path: str, revision: str | None = None) -> ModelConfig:
    ref = (name_or_path or "").strip()
    if not ref:
        return ModelConfig(None, "", "no model set", "set model.name_or_path to a local folder or a hub id")
    path = Path(ref).expanduser()
    if (path.is_absolute() or ref.startswith((".", "~"))) and not path.exists():
        return ModelConfig(None, "", f"{ref} does not exist",
                           "point model.name_or_path at a folder saved with save_pretrained, or use a hub id")
    # Profiles default revision to "main"; find_config treats an explicit revision as a pin to check.
    try:
        config, origin = find_config(ref, None if revision in (None, "", "main") else revision)
    except EstimateUnavailable as exc:
        return ModelConfig(None, "", str(exc).removeprefix("estimate unavailable: ").removeprefix(
            "estimate unavailable for "), "")
    return ModelConfig(config, origin)
