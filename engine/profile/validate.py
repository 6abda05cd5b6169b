"""The one profile validator: TOML text or a mapping in, a Profile or a list of clear problems out.

The CLI, the engine and the TUI's form all call `validate`. Every problem names the file, the field and
what to do instead; nothing here raises a bare exception at the user.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .schema import SECTIONS, TOP_LEVEL, Profile, applies

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Problem:
    where: str    # "training.micro_batch", or "" for the file as a whole
    message: str
    hint: str = ""

    def render(self, source: str | None) -> str:
        head = f"{source}: " if source else ""
        text = f"{head}{self.where}: {self.message}" if self.where else f"{head}{self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ProfileError(Exception):
    """A profile that cannot be used; str() is the full, user-facing explanation."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__("\n".join(p.render(source) for p in problems))


def load(path: str | Path) -> Profile:
    """Read and validate a profile file. Raises ProfileError (never a bare TOML or OS error)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([Problem("", "no such profile file",
                                    "give a path to a .toml file, or a profile name from `tunetop profiles`")],
                           str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([Problem("", f"cannot read the file: {exc}")], str(path)) from None
    return loads(text, source=path)


def loads(text: str, source: str | Path | None = None) -> Profile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ProfileError([Problem("", f"not valid TOML: {exc}",
                                    "check quotes around strings and `key = value` syntax on that line")],
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
                problems.append(Problem(key, f"must be a table ([{key}]), got {_describe(value)}"))
                continue
            section = getattr(profile, key)
            for fkey, fvalue in value.items():
                set_field(section, key, fkey, fvalue, base_dir, problems)
        elif key in TOP_LEVEL:
            if isinstance(value, str):
                setattr(profile, key, value)
            else:
                problems.append(Problem(key, f"must be a string, got {_describe(value)}"))
        else:
            problems.append(Problem(key, "unknown key", _did_you_mean_top(key)))

    if not problems:
        problems.extend(_consistency(profile, raw))
    if problems:
        raise ProfileError(problems, str(source) if source else None)
    return profile


def check_field(section: str, key: str, value: Any) -> str | None:
    """Validate one value as typed in a form; returns the problem text or None."""
    probe = SECTIONS[section]()
    problems: list[Problem] = []
    set_field(probe, section, key, value, None, problems)
    return problems[0].render(None) if problems else None


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
        problems.append(Problem(where, f"{error}, got {_describe(value)}", meta["hint"]))
        return
    if meta["path"] and base_dir is not None:
        converted = _resolve_paths(converted, base_dir)
    setattr(section_obj, key, converted)


def _convert(value: Any, meta) -> tuple[str | None, Any]:
    kind, lo, hi = meta["kind"], meta["min"], meta["max"]

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
        return bounded(float(value), "a number")
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
    # [distributed]: combinations of GPUs, processes, machines and strategy (engine/distributed/layout.py).
    from ..distributed.layout import problems as layout_problems
    out.extend(layout_problems(p))
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


def _describe(value: Any) -> str:
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
