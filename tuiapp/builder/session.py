"""The profile file the builder has open: reading it (keeping what the form cannot show in a list of
problems, never silently), noticing when it changed on disk, and writing it back.

No Textual here: the screen asks, this module does the file work, and tests call it directly.

Saving keeps comments: over an existing file (or as a copy of the file that was opened) the text is edited
in place by toml_update.update_text, and the result must parse back to exactly the profile in the form.
When it cannot (a value spread over several lines, dotted keys), a fresh file is written with tomli-w and
`SaveReport.comments_dropped` says so; the screen asks before that happens.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine import paths
from engine.profile import Profile, ProfileError, dumps, is_bundled, validate, write_atomic
from engine.profile.schema import SECTIONS, applies, section_fields
from engine.profile.validate import Problem, set_field  # the validator's own per-field conversion

from .toml_update import has_comments, update_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class Opened:
    """A profile as read for the form, and what of its file the form could not keep."""
    profile: Profile
    path: Path | None = None
    text: str | None = None                 # the file's text at open (None for a blank profile)
    digest: str | None = None
    mtime_ns: int | None = None
    not_kept: list[str] = field(default_factory=list)   # "training.foo = 1: unknown key (did you mean ...)"

    @property
    def bundled(self) -> bool:
        return self.path is not None and is_bundled(self.path)


@dataclass
class SaveReport:
    path: Path
    comments_kept: bool
    comments_dropped: bool      # the old text had comments and the new one was written fresh
    removed: list[str]          # keys of the old file that the new one no longer has, with why


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blank() -> Opened:
    return Opened(Profile(name="untitled"))


def open_profile(path: str | Path) -> Opened:
    """Read a profile for editing. A file with problems still opens: each value the validator refuses (an
    unknown key, a wrong type) is left out of the form and listed in `not_kept`. Raises ProfileError only
    when the file cannot be read or is not TOML at all."""
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([Problem("", f"cannot read the file: {exc}")], str(path)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([Problem("", f"not valid TOML: {exc}", "fix it in an editor, then open it again")],
                           str(path)) from None
    opened = Opened(lenient_profile(raw, path, not_kept := []), path, text, digest(data), path.stat().st_mtime_ns)
    opened.not_kept = not_kept
    return opened


def lenient_profile(raw: dict, path: Path, not_kept: list[str]) -> Profile:
    """Like validate, but a refused value is dropped (and listed) instead of failing the whole file, and
    whole-profile rules (a model is required, ...) are not checked: the form shows those beside the field."""
    profile = Profile(name=path.stem, source=str(path))
    base = path.resolve().parent
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            for fkey, fvalue in value.items():
                problems: list[Problem] = []
                set_field(getattr(profile, key), key, fkey, fvalue, base, problems)
                not_kept += [f"{key}.{fkey} = {_show(fvalue)}: {p.message}" + (f" ({p.hint})" if p.hint else "")
                             for p in problems]
        elif key in ("name", "description") and isinstance(value, str):
            setattr(profile, key, value)
        else:
            not_kept.append(f"{key} = {_show(value)}: not a profile setting")
    method = profile.method.type
    for section, table in raw.items():
        if section in SECTIONS and isinstance(table, dict):
            for f in section_fields(section):
                if f.name in table and not applies(f, method):
                    not_kept.append(f"{section}.{f.name}: does not apply to method \"{method}\"")
    return profile


def _show(value) -> str:
    text = repr(value) if not isinstance(value, dict) else "{...}"
    return text if len(text) <= 40 else text[:37] + "..."


def changed_on_disk(opened: Opened) -> str | None:
    """None when the file is as it was at open; else "changed" or "deleted"."""
    if opened.path is None or opened.digest is None:
        return None
    try:
        data = opened.path.read_bytes()
    except FileNotFoundError:
        return "deleted"
    except OSError:
        return "changed"
    return None if digest(data) == opened.digest else "changed"


def user_path(name: str) -> Path:
    return paths.user_profiles() / f"{name}.toml"


def valid_name(name: str) -> str | None:
    """The problem with a new profile name, or None."""
    if not name:
        return "give the profile a name"
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        return "use letters, digits, - _ and . only (it becomes the file name)"
    return None


def render(profile: Profile, target: Path, base_text: str | None) -> tuple[str, bool, list[str]]:
    """(text to write, comments kept, removed keys). base_text: the file being replaced or copied."""
    desired = profile.to_dict()
    defaults = Profile(name=target.stem).to_dict()
    defaults.setdefault("description", "")
    removed = _removed(base_text, desired) if base_text else []
    if base_text:
        text = update_text(base_text, desired, _all_defaults(defaults))
        if text is not None and _loads_back(text, target, profile):
            return text, True, removed
    return dumps(profile), False, removed


def _all_defaults(defaults: dict) -> dict:
    """Defaults of every field, including those to_dict leaves out for the default method."""
    out = {k: v for k, v in defaults.items() if not isinstance(v, dict)}
    for section in SECTIONS:
        probe = SECTIONS[section]()
        out[section] = {f.name: getattr(probe, f.name) for f in section_fields(section)}
    return out


def _removed(base_text: str, desired: dict) -> list[str]:
    try:
        old = tomllib.loads(base_text)
    except tomllib.TOMLDecodeError:
        return []
    gone = []
    for key, value in old.items():
        if isinstance(value, dict):
            table = desired.get(key)
            gone += [f"{key}.{k}" for k in value if not isinstance(table, dict) or k not in table]
        elif key not in desired:
            gone.append(key)
    return gone


def _loads_back(text: str, target: Path, profile: Profile) -> bool:
    try:
        again = validate(tomllib.loads(text), source=target)
    except (ProfileError, tomllib.TOMLDecodeError):
        return False
    return again.to_dict() == profile.to_dict()


def save(opened: Opened, profile: Profile, target: Path) -> SaveReport:
    """Write the profile atomically to target; `opened` then describes the new file."""
    base = opened.text
    text, kept, removed = render(profile, target, base)
    write_atomic(target, text)
    data = target.read_bytes()
    opened.path, opened.text, opened.digest = target, text, digest(data)
    opened.mtime_ns = target.stat().st_mtime_ns
    opened.not_kept = []
    profile.source = str(target)
    opened.profile = profile
    return SaveReport(target, kept, bool(base) and not kept and has_comments(base), removed)
