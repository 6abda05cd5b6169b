"""Finding, writing and listing profile files.

Writes are atomic (temp file in the same folder, fsync, rename) so a crash never leaves half a profile.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tomli_w

from .. import paths
from .schema import Profile
from .validate import Problem, ProfileError, load


def find(name_or_path: str) -> Path:
    """A profile given as a path, or by name among the user's and the bundled profiles (user's first)."""
    p = Path(name_or_path).expanduser()
    if p.suffix == ".toml" or os.sep in name_or_path:
        return p
    for folder in (paths.user_profiles(), paths.BUNDLED_PROFILES):
        candidate = folder / f"{name_or_path}.toml"
        if candidate.exists():
            return candidate
    known = ", ".join(sorted(q.stem for q in list_profiles()))
    raise ProfileError([Problem("", f'no profile named "{name_or_path}"',
                                f"known profiles: {known}" if known else "pass the path of a .toml file")],
                       name_or_path)


def load_named(name_or_path: str) -> Profile:
    return load(find(name_or_path))


def list_profiles() -> list[Path]:
    """Bundled profiles, then the user's (a user profile with the same name hides the bundled one)."""
    found: dict[str, Path] = {}
    for folder in (paths.BUNDLED_PROFILES, paths.user_profiles()):
        if folder.is_dir():
            for f in sorted(folder.glob("*.toml")):
                found[f.stem] = f
    return list(found.values())


def is_bundled(path: str | Path) -> bool:
    return Path(path).resolve().parent == paths.BUNDLED_PROFILES.resolve()


def dumps(profile: Profile) -> str:
    return tomli_w.dumps(profile.to_dict())


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(profile: Profile, path: str | Path) -> None:
    write_atomic(path, dumps(profile))
