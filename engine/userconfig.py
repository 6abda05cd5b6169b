"""The user's own settings: `$XDG_CONFIG_HOME/tunetop/config.toml` (default ~/.config/tunetop/config.toml).

Today it holds one section, [notify] (what the engine tells you, and where):

    [notify]
    urls = ["ntfy://my-secret-topic", "mailto://user:app-password@gmail.com"]   # any apprise URL
    command = ["notify-send", "tunetop"]       # argv run without a shell; TUNETOP_* variables in its env
    on = ["completed", "failed", "stopped", "backoff", "nan", "stalled", "eval_rising"]
    eval_rising = 3                            # evaluations in a row with a higher eval loss
    timeout_s = 10                             # per delivery; a slow endpoint never slows training
    attach_report = true                       # the HTML report goes with the end message where it can

The file is validated like a profile (unknown keys with a did-you-mean, wrong types, the field named).
URLs are secrets: this file is the only place they live; run.toml, events and logs only ever show a
redacted form (`redact`). A profile's own [notify] section can change everything here except the URLs.
"""
from __future__ import annotations

import difflib
import os
import shutil
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import TunetopError
from .profile.validate import describe as _describe   # one wording of a wrong value, as profiles say it

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# The notification events a user can ask for (`on`), in the order the README lists them.
NOTIFY_EVENTS = ("completed", "failed", "stopped", "backoff", "nan", "stalled", "eval_rising")


class ConfigError(TunetopError):
    """config.toml (or a profile's [notify]) cannot be used; the message names the file and the field."""


@dataclass
class NotifyConfig:
    urls: list = field(default_factory=list)
    command: list = field(default_factory=list)
    on: list = field(default_factory=lambda: list(NOTIFY_EVENTS))
    eval_rising: int = 3
    timeout_s: float = 10.0
    attach_report: bool = True

    @property
    def active(self) -> bool:
        return bool(self.urls or self.command)


# key -> (kind, one-line hint). Kinds: "str_list", "int", "float", "bool".
NOTIFY_FIELDS: dict[str, tuple[str, str]] = {
    "urls": ("str_list", 'apprise URLs, e.g. ["ntfy://my-topic"] (see https://github.com/caronc/apprise/wiki)'),
    "command": ("str_list", 'a program and its arguments, e.g. ["notify-send", "tunetop"] (no shell)'),
    "on": ("str_list", f"events to notify on: {', '.join(NOTIFY_EVENTS)}"),
    "eval_rising": ("int", "notify when the eval loss rose this many evaluations in a row (>= 1)"),
    "timeout_s": ("float", "seconds one delivery may take before it is abandoned (> 0)"),
    "attach_report": ("bool", "attach the HTML report to the end message where the channel takes files"),
}
SECTIONS = {"notify": NOTIFY_FIELDS}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "tunetop" / "config.toml"


def load(path: Path | None = None, check_channels: bool = True) -> NotifyConfig:
    """The [notify] settings from config.toml (a missing file: notifications off). Raises ConfigError."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NotifyConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}",
                          "check quotes around strings and `key = value` syntax on that line") from None
    for key, value in raw.items():
        if key not in SECTIONS:
            close = difflib.get_close_matches(key, list(SECTIONS), n=1)
            hint = f'did you mean "[{close[0]}]"?' if close else f"config.toml has the sections: {', '.join(SECTIONS)}"
            raise ConfigError(f"{path}: {key}: unknown key", hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: must be a table ([{key}]), got {_describe(value)}")
    cfg = NotifyConfig()
    apply(cfg, raw.get("notify", {}), str(path), "notify")
    if check_channels:
        check(cfg, str(path))
    return cfg


def apply(cfg: NotifyConfig, table: dict, source: str, section: str, allowed: tuple | None = None) -> None:
    """Set the fields of one [notify] table on cfg, checking each (allowed: the keys this file may set)."""
    names = list(allowed or NOTIFY_FIELDS)
    for key, value in table.items():
        where = f"{source}: {section}.{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            if key in NOTIFY_FIELDS:
                hint = f"{key} can only be set in {config_path()} (notify URLs are secrets: keep them out of profiles)"
            else:
                hint = f'did you mean "{close[0]}"?' if close else f"known keys in [{section}]: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key", hint)
        kind, hint = NOTIFY_FIELDS[key]
        setattr(cfg, key, _convert(where, key, kind, hint, value))


def _convert(where: str, key: str, kind: str, hint: str, value: Any) -> Any:
    if kind == "str_list":
        if isinstance(value, str):
            value = [value] if key != "command" else value.split()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {_describe(value)}", hint)
        if key == "on":
            for name in value:
                if name not in NOTIFY_EVENTS:
                    close = difflib.get_close_matches(name, NOTIFY_EVENTS, n=1)
                    raise ConfigError(f'{where}: unknown event "{name}"',
                                      f'did you mean "{close[0]}"?' if close else hint)
        return list(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: expected a whole number >= 1, got {_describe(value)}", hint)
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: expected a number > 0, got {_describe(value)}", hint)
        return float(value)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {_describe(value)}", hint)
    return value


def check(cfg: NotifyConfig, source: str) -> None:
    """Every URL's scheme is one apprise knows and the command exists (before a run is launched)."""
    for i, url in enumerate(cfg.urls):
        if not url_ok(url):
            raise ConfigError(f"{source}: notify.urls[{i}] ({redact(url)}): apprise does not understand this URL",
                              "check the scheme and the fields after it: "
                              "https://github.com/caronc/apprise/wiki lists every service's URL form")
    if cfg.command and not command_path(cfg.command[0]):
        raise ConfigError(f'{source}: notify.command: program "{cfg.command[0]}" not found',
                          "give an absolute path or a program on your PATH (the command runs without a shell)")


def url_ok(url: str) -> bool:
    import apprise  # imported here: only the engine's notifier and these checks need it
    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


def command_path(program: str) -> str | None:
    if os.sep in program:
        p = Path(program).expanduser()
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    return shutil.which(program)


def redact(url: str) -> str:
    """What may be shown of a notify URL: its scheme. Tokens, topics, hosts and passwords stay out."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://***" if sep else "***"


def field_names() -> list[str]:
    return [f.name for f in fields(NotifyConfig)]
