"""Find a config.json for a model reference without downloading anything.

Order: a local folder (or a config.json path), the Hugging Face cache, then the bundled table. Why this
order: a local folder or a cached snapshot is the model the user will actually train (fine-tunes change
vocab_size, for one), while the bundled table only knows the published base models.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import TunetopError
from . import architectures


class EstimateUnavailable(TunetopError, LookupError):
    """No config.json could be found; the message says where we looked, the hint how to fix it."""


class ConfigSource(NamedTuple):
    config: dict
    source: str  # where it came from, for display: "local folder ...", "HF cache ...", "bundled table"


def hf_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise EstimateUnavailable(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise EstimateUnavailable(f"{path} is not a JSON object")
    return data


def _text_config(config: dict) -> dict:
    """The config as written: multimodal wrappers (Gemma 3) keep their text_config and vision_config, which
    engine.estimate.params reads (the text part is trained, the vision tower is loaded beside it)."""
    return config


def _from_folder(folder: Path, seen: set[str]) -> ConfigSource | None:
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        return ConfigSource(_text_config(_read_json(cfg_path)), f"local folder {folder}")
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        # A PEFT adapter folder: the memory is the base model's.
        base = _read_json(adapter).get("base_model_name_or_path")
        if base and base not in seen:
            seen.add(base)
            found = _find(base, None, seen)
            return ConfigSource(found.config, f"{found.source}, base of the adapter in {folder}")
    return None


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _from_hf_cache(repo_id: str, revision: str | None) -> ConfigSource | None:
    cache = hf_cache_dir()
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.is_dir():
        return None
    snapshots = repo_dir / "snapshots"
    wanted = revision or "main"
    ref = repo_dir / "refs" / wanted
    commit = None
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif _COMMIT.match(wanted) and (snapshots / wanted).is_dir():
        commit = wanted
    if commit:
        cfg_path = snapshots / commit / "config.json"
        if cfg_path.is_file():
            return ConfigSource(_text_config(_read_json(cfg_path)), f"HF cache {cfg_path.parent} (revision {wanted})")
    if revision:
        # An explicit revision that is not cached must not silently fall back to another snapshot.
        raise EstimateUnavailable(
            f"revision {revision!r} of {repo_id} is not in the Hugging Face cache at {cache}",
            f"download its config with: hf download {repo_id} config.json --revision {revision}",
        )
    # No refs/main (cache filled by a commit hash only): take the newest snapshot that has a config.json.
    candidates = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if candidates:
        return ConfigSource(_text_config(_read_json(candidates[0])), f"HF cache {candidates[0].parent}")
    return None


def cached_config(repo_id: str, revision: str | None = None) -> ConfigSource | None:
    """A hub model's config.json from the local cache only (None when it is not cached)."""
    try:
        return _from_hf_cache(repo_id, revision)
    except EstimateUnavailable:
        return None


def _find(model: str, revision: str | None, seen: set[str]) -> ConfigSource:
    path = Path(model).expanduser()
    if path.is_file() and path.name.endswith(".json"):
        return ConfigSource(_text_config(_read_json(path)), f"file {path}")
    if path.is_dir():
        found = _from_folder(path, seen)
        if found:
            return found
        raise EstimateUnavailable(f"the folder {path} has no config.json",
                                  "point model.name_or_path at the folder that holds config.json and the weights")
    found = _from_hf_cache(model, revision)
    if found:
        return found
    bundled = architectures.lookup(model)
    if bundled is not None:
        if revision:
            return ConfigSource(bundled, f"bundled table ({model}; revision {revision} not checked)")
        return ConfigSource(bundled, f"bundled table ({model})")
    raise EstimateUnavailable(
        f"no config.json for {model!r}: it is not a local folder, it is not in the Hugging Face cache "
        f"at {hf_cache_dir()}, and it is not one of the {len(architectures.known_ids())} bundled architectures "
        f"(e.g. {', '.join(list(architectures.ARCHITECTURES)[:3])})",
        f"fetch only its config with: hf download {model} config.json",
    )


def find_config(model: str, revision: str | None = None) -> ConfigSource:
    """(config dict, where it came from) for a local folder, a config.json path or a hub id.

    Raises EstimateUnavailable with the reason when none is found.
    """
    if not model or not str(model).strip():
        raise EstimateUnavailable("no model given", "set model.name_or_path to a local folder or a hub id")
    return _find(str(model).strip(), revision, {str(model)})


def cached_models() -> list[tuple[str, dict]]:
    """(hub id, config) of every model in the local Hugging Face cache that has a config.json."""
    cache = hf_cache_dir()
    out = []
    for repo_dir in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/")
        found = cached_config(repo_id)
        if found is not None:
            out.append((repo_id, found.config))
    return out


@dataclass(frozen=True)
class ModelConfig:
    """A profile's model as the estimate and the preflight see it: "unavailable" is a value with a reason."""

    config: dict | None  # the parsed config.json, or None when unavailable
    origin: str  # where it came from ("local folder ...", "HF cache ...", "bundled table (...)"), or ""
    problem: str = ""  # why it is unavailable (empty when config is set)
    hint: str = ""
    kind: str = ""  # "local" | "cache" | "bundled" | "missing-path" | "not-a-model" | "unknown"

    @property
    def on_disk(self) -> bool:
        """The model the engine will load is here (a local folder or the HF cache), not only its architecture."""
        return self.kind in ("local", "cache")


def resolve(name_or_path: str, revision: str | None = None) -> ModelConfig:
    """The one resolver of a profile's model.name_or_path: a local folder, the HF cache, then the bundled
    table. Never raises. Profiles default revision to "main"; an explicit other revision is a pin to check."""
    ref = (name_or_path or "").strip()
    if not ref:
        return ModelConfig(None, "", "no model set", "set model.name_or_path to a local folder or a hub id",
                           "unknown")
    path = Path(ref).expanduser()
    if (path.is_absolute() or ref.startswith((".", "~"))) and not path.exists():
        return ModelConfig(None, "", f"{ref} does not exist",
                           "point model.name_or_path at a folder saved with save_pretrained, or use a hub id",
                           "missing-path")
    try:
        config, origin = find_config(ref, None if revision in (None, "", "main") else revision)
    except EstimateUnavailable as exc:
        kind = "not-a-model" if path.is_dir() else "unknown"
        return ModelConfig(None, "", exc.message, exc.hint, kind)
    kind = "local" if origin.startswith(("local folder", "file")) and "base of the adapter" not in origin else \
        "cache" if origin.startswith("HF cache") else "bundled"
    return ModelConfig(config, origin, kind=kind)
