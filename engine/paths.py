"""Where tunetop keeps things on disk.

Runs live under $TUNETOP_HOME/runs (default $XDG_DATA_HOME/tunetop/runs), the user's profiles under
$XDG_CONFIG_HOME/tunetop/profiles, and the bundled ones in the repository's profiles/ folder.
"""
from __future__ import annotations

import os
from pathlib import Path

# The checkout (or editable install) root: engine/ sits right under it next to profiles/ and assets/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_PROFILES = PROJECT_ROOT / "profiles"
ASSETS = PROJECT_ROOT / "assets"


def data_home() -> Path:
    if os.environ.get("TUNETOP_HOME"):
        return Path(os.environ["TUNETOP_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(base).expanduser() / "tunetop"


def runs_root(override: str | os.PathLike | None = None) -> Path:
    """The folder holding one sub-folder per run. A profile's output.runs_root overrides it."""
    if override:
        return Path(override).expanduser()
    return data_home() / "runs"


def user_profiles() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "tunetop" / "profiles"
