"""The one profile validator: TOML text or a mapping in, a Profile or a list of clear problems out.

The CLI, the engine and the TUI's form all call `validate`. Every problem names the file, the field and
what to do instead; nothing here raises a bare exception at the user. Odd input is refused, never waited
on: a profile path that is a FIFO, a device or a symlink to one is not opened, a file over
MAX_PROFILE_BYTES is not read, TOML nested past the parser's depth is an error, and numbers must be finite
and within the field's range (whole numbers without a range of their own stop at INT_LIMIT).
"""
from __future__ import annotations

import difflib
import math
import os
import stat
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from .distributed_rules import problems as distributed_problems
from .problems import Problem, ProfileError
from .schema import SECTIONS, TOP_LEVEL, Profile, applies

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


# A profile is a few kilobytes of TOML; a bigger file is the wrong file, and is not read into memory.
MAX_PROFILE_BYTES = 1 << 20
# Whole numbers the schema gives no upper bound stop here: TOML integers are unbounded in Python, and the
# Trainer, torch and numpy keep counts and seeds in fixed-width integers.
INT_LIMIT = 2**31 - 1


def load(path: str | Path) -> Profile:
    """Read and validate a profile file. Raises ProfileError (never a bare TOML or OS error)."""
    path = Path(path)
    return loads(_read_profile(path), source=path)


def _read_profile(path: Path) -> str:
    """The text of a profile file. Anything but a regular file (after symlinks) is refused before it is
    opened: reading a FIFO waits for a writer for ever, and /dev/zero or /dev/urandom never end."""
    def fail(message: str, hint: str = "") -> ProfileError:
        return ProfileError([Problem("", message, hint)], str(path))

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise fail("no such profile file",
                   "give a path to a .toml file, or a profile name from `tunetop profiles`") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise fail("is a folder, not a profile file", "give the path of a .toml file, or a profile name")
    if not stat.S_ISREG(info.st_mode):
        via = f" (a symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise fail(f"is{via} {_file_kind(info.st_mode)}, not a regular file",
                   "a profile is a .toml file: give its path, or a profile name from `tunetop profiles`")
    if info.st_size > MAX_PROFILE_BYTES:
        raise fail(f"is {info.st_size / 2**20:.1f} MiB; a profile is a small TOML file (at most "
                   f"{MAX_PROFILE_BYTES >> 20} MiB)", "check that this is the profile you meant")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, the open does not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise fail("is not a regular file", "a profile is a .toml file")
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise fail(f"is over {MAX_PROFILE_BYTES >> 20} MiB; a profile is a small TOML file",
                   "check that this is the profile you meant")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise fail(f"line {line} is not UTF-8 text", "save the profile as UTF-8") from None


def _file_kind(mode: int) -> str:
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def loads(text: str, source: str | Path | None = None) -> Profile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ProfileError([Problem("", f"not valid TOML: {exc}",
                                    "check quotes around strings and `key = value` syntax on that line")],
                           str(source) if source else None) from None
    except RecursionError:
        raise ProfileError([Problem("", "arrays or tables are nested too deeply to read",
                                    "a profile's values are numbers, strings, and short lists or tables")],
                           str(source) if source else None) from None
    return validate(raw, source=source)


def validate(raw: dict, source: str | Path | None = None) -> Profile:
    """Check a parsed profile against the schema; return a Profile with defaults filled and paths resolved."""
    problems: list[Problem] = []
    base_dir = Path(source).resolve().parent if source else None
    profile = Profile(name=Path(source).stem if source else "untitled",
                      source=str(source) if source else None)

    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                problems.append(Problem(key, f"must be a table ([{key}]), got {describe(value)}"))
                continue
            section = getattr(profile, key)
            for fkey, fvalue in value.items():
                set_field(section, key, fkey, fvalue, base_dir, problems)
        elif key in TOP_LEVEL:
            if isinstance(value, str):
                setattr(profile, key, value)
            else:
                problems.append(Problem(key, f"must be a string, got {describe(value)}"))
        else:
            problems.append(Problem(key, "unknown key", _did_you_mean_top(key)))

    if not problems:
        problems.extend(_consistency(profile, raw))
    if problems:
        raise ProfileError(problems, str(source) if source else None)
    return profile


def field_problem(section: str, key: str, value: Any) -> Problem | None:
    """Validate one value as typed in a form: the Problem (message and hint apart) or None."""
    probe = SECTIONS[section]()
    problems: list[Problem] = []
    set_field(probe, section, key, value, None, problems)
    return problems[0] if problems else None


def check_field(section: str, key: str, value: Any) -> str | None:
    """field_problem as text: `section.key: message` and `  hint: ...` on the next line, or None."""
    problem = field_problem(section, key, value)
    return problem.render(None) if problem else None


# -- fields ---------------------------------------------------------------------------------------------

def set_field(section_obj, section: str, key: str, value: Any, base_dir: Path | None,
              problems: list[Problem]) -> None:
    """Convert and set one field, or append the problem (the form opens imperfect files with it)."""
    by_name = {f.name: f for f in fields(section_obj)}
    where = f"{section}.{key}"
    if key not in by_name:
        problems.append(Problem(where, "unknown key", _did_you_mean(section, key)))
        return
    meta = by_name[key].metadata
    error, converted = _convert(value, meta)
    if error:
        problems.append(Problem(where, f"{error}, got {describe(value)}", meta["hint"]))
        return
    if meta["path"] and base_dir is not None:
        converted = _resolve_paths(converted, base_dir)
    setattr(section_obj, key, converted)


def _convert(value: Any, meta) -> tuple[str | None, Any]:
    kind, lo, hi = meta["kind"], meta["min"], meta["max"]
    if kind in ("int", "int_or_auto") and hi is None:
        hi = INT_LIMIT

    def bounded(v, noun):
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = (f"from {_num(lo)} to {_num(hi)}" if lo is not None and hi is not None
                   else f">= {_num(lo)}" if lo is not None else f"<= {_num(hi)}")
            return f"expected {noun} {rng}", None
        return None, v

    if kind == "bool":
        return (None, value) if isinstance(value, bool) else ("expected true or false", None)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected a whole number", None
        return bounded(value, "a whole number")
    if kind == "int_or_auto":
        if value == "auto":
            return None, value
        if isinstance(value, bool) or not isinstance(value, int):
            return 'expected a whole number or "auto"', None
        return bounded(value, "a whole number")
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expected a number", None
        try:
            number = float(value)
        except OverflowError:          # a whole number too big for a float
            return "expected a finite number", None
        if not math.isfinite(number):  # TOML has nan and inf; both slip through every comparison
            return "expected a finite number", None
        return bounded(number, "a number")
    if kind == "choice":
        if value not in meta["choices"]:
            close = difflib.get_close_matches(str(value), meta["choices"], n=1)
            options = ", ".join(meta["choices"])
            return (f"expected one of {options}" + (f' (did you mean "{close[0]}"?)' if close else "")), None
        return None, value
    if kind == "str_or_list":
        if isinstance(value, str):
            return None, value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return None, list(value)
        return "expected a string or a non-empty list of strings", None
    if kind == "table":
        return _table(value)
    return (None, value) if isinstance(value, str) else ("expected a string", None)


def _table(value: Any) -> tuple[str | None, Any]:
    """A mapping of names to strings (data.columns). The form passes text: a TOML inline table or JSON."""
    if isinstance(value, str):
        import ast
        import json
        raw = value.strip() or "{}"
        for parse in (lambda t: tomllib.loads(f"v = {t}")["v"], json.loads, ast.literal_eval):
            try:
                value = parse(raw)
                break
            except Exception:  # each spelling fails in its own way; the next one is tried
                continue
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None, dict(value)
    return 'expected a table of names, e.g. { prompt = "question", completion = "answer" }', None


def _resolve_paths(value, base_dir: Path):
    """Relative paths in a profile mean 'next to this file'. Hub ids (org/name) that do not exist on
    disk are left alone, so `meta-llama/Llama-3.1-8B` stays a hub id."""
    if isinstance(value, list):
        return [_resolve_paths(v, base_dir) for v in value]
    if not value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = (base_dir / p).resolve()
    if candidate.exists() or value.startswith((".", "~")):
        return str(candidate)
    return value


# -- whole-profile rules -----------------------------------------------------------------------------------

def _consistency(p: Profile, raw: dict) -> list[Problem]:
    out: list[Problem] = []
    given = {(s, k) for s, table in raw.items() if isinstance(table, dict) for k in table}
    if not p.model.name_or_path:
        out.append(Problem("model.name_or_path", "is required",
                           'set it to a local model folder or a hub id, e.g. "meta-llama/Llama-3.1-8B"'))
    if not p.data.path:
        out.append(Problem("data.path", "is required", "set it to a dataset file, a folder of .txt, or a hub name"))
    for section, key in sorted(given):
        f = _field(section, key)
        if f is not None and not applies(f, p.method.type):
            kind = "4-bit quantisation" if f.metadata["methods"] == ("qlora",) else "LoRA"
            fix = ('a 4-bit model cannot be fully fine-tuned or trained as plain LoRA: use type = "qlora", '
                   if kind.startswith("4-bit") else 'use type = "lora" or "qlora", ')
            out.append(Problem(f"{section}.{key}", f'is a {kind} setting, but method.type = "{p.method.type}"',
                               fix + f"or remove {key}"))
    if p.data.eval_split and p.data.eval_fraction:
        out.append(Problem("data.eval_fraction", "set both eval_split and eval_fraction",
                           "use eval_split for a hub dataset's own split, or eval_fraction to hold out rows"))
    if p.training.eval_steps and not (p.data.eval_split or p.data.eval_fraction):
        out.append(Problem("training.eval_steps", "evaluation asked for but there is no eval data",
                           "set data.eval_fraction (e.g. 0.05) or data.eval_split, or eval_steps = 0"))
    if p.training.epochs == 0 and p.training.max_steps == 0:
        out.append(Problem("training.max_steps", "neither epochs nor max_steps asks for any training",
                           "set epochs > 0 or max_steps > 0"))
    # [distributed]: combinations of GPUs, processes, machines and strategy (distributed_rules.py).
    out.extend(distributed_problems(p))
    return out


# -- messages --------------------------------------------------------------------------------------------

def _field(section: str, key: str):
    return next((f for f in fields(SECTIONS[section]) if f.name == key), None) if section in SECTIONS else None


def _did_you_mean(section: str, key: str) -> str:
    names = [f.name for f in fields(SECTIONS[section])]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    for other, cls in SECTIONS.items():
        if key in {f.name for f in fields(cls)}:
            return f"{key} belongs in [{other}], not [{section}]"
    return f"known keys in [{section}]: {', '.join(names)}"


def _did_you_mean_top(key: str) -> str:
    for other, cls in SECTIONS.items():
        if key in {f.name for f in fields(cls)}:
            return f"{key} belongs in the [{other}] section"
    close = difflib.get_close_matches(key, [*SECTIONS, *TOP_LEVEL], n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    return f"a profile has the sections {', '.join(f'[{s}]' for s in SECTIONS)} and a description"


def describe(value: Any) -> str:
    """A wrong value as messages show it: `"x" (a string)`, `3 (a number)`, `a list` ..."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, str):
        return f'"{value}" (a string)'
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
