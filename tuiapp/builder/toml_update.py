"""Save a profile over an existing TOML file without losing its comments.

tomli-w writes a fresh file and drops every comment. Profiles are small, hand-written `key = value` files
with comments that explain them, so saving edits the file line by line instead:

- a `key = value` line whose value changed gets the new value; the rest of the line (an inline comment,
  the spacing) stays; lines whose value did not change are left byte for byte (3e-3 stays 3e-3);
- a key that no longer applies (LoRA settings after switching to a full fine-tune) or that the schema
  does not know loses its line; a table the schema does not know loses its header;
- a key that is not in the file is added, at the end of its table, only when its value differs from the
  default (the file stays as short as the user wrote it; loading fills the defaults back in);
- comment lines and blank lines are never touched.

Anything this cannot edit safely (a value spanning several lines, dotted keys, inline tables) makes
`update_text` return None, and the caller writes a fresh file instead, saying that comments were dropped.
The caller also checks that the result parses back to exactly the intended profile.
"""
from __future__ import annotations

import re
import sys

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_-]+)(\s*=\s*)(.*)$")
_OTHER_HEADER = re.compile(r"^\s*\[")   # [[arrays of tables]] or dotted headers: not handled


def render_value(value) -> str:
    """One TOML value on one line (tomli-w spreads arrays over several lines)."""
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].rstrip("\n")


def _split_value(rest: str):
    """(parsed value, value text, trailer: spaces + comment) or None when the value is not on this line."""
    cuts = [i for i, ch in enumerate(rest) if ch == "#"] + [len(rest)]
    for cut in cuts:
        candidate = rest[:cut]
        try:
            parsed = tomllib.loads("v = " + candidate)["v"]
        except tomllib.TOMLDecodeError:
            continue
        stripped = candidate.rstrip()
        return parsed, stripped, rest[len(stripped):]
    return None


def _same(a, b) -> bool:
    """Equal as the validator sees them: 1 and 1.0 are the same number (float fields accept both), but a
    bool is never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def update_text(original: str, desired: dict, defaults: dict) -> str | None:
    """The original text edited to hold `desired` ({"name": .., "description": .., section: {key: value}}).

    defaults: the same shape, with the value a key takes when it is absent from the file.
    """
    lines = original.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    out: list[str] = []
    section: str | None = None      # None: top level
    seen: dict[str | None, set] = {}
    last_key_at: dict[str | None, int] = {}   # index in `out` after the last key line of each table
    first_header_at: int | None = None
    skipping = False                # inside a table the schema does not know

    for line in lines:
        header = _HEADER.match(line)
        if header:
            section = header.group(1)
            if first_header_at is None:
                first_header_at = len(out)
            skipping = not isinstance(desired.get(section), dict)
            if skipping:
                continue            # unknown table: its header goes (its keys go below)
            out.append(line)
            seen.setdefault(section, set())
            last_key_at[section] = len(out)
            continue
        if _OTHER_HEADER.match(line):
            return None
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        m = _KEY.match(line.rstrip("\n"))
        if not m:
            return None             # dotted key, quoted key, or a continuation of a multi-line value
        indent, key, eq, rest = m.groups()
        split = _split_value(rest)
        if split is None:
            return None
        if skipping:
            continue
        old, _, trailer = split
        table = desired if section is None else desired[section]
        seen.setdefault(section, set()).add(key)
        if key not in table or (section is None and isinstance(table.get(key), dict)):
            continue                # no longer applies, or unknown: the line goes
        new = table[key]
        out.append(line if _same(old, new) else f"{indent}{key}{eq}{render_value(new)}{trailer}\n")
        last_key_at[section] = len(out)

    # Keys that are not in the file and differ from their default, at the end of their table.
    inserts: dict[int, list[str]] = {}
    appended: list[str] = []
    top_missing = [f"{k} = {render_value(v)}\n" for k, v in desired.items()
                   if not isinstance(v, dict) and k not in seen.get(None, set()) and not _same(v, defaults.get(k))]
    if top_missing:
        if None in last_key_at:
            inserts.setdefault(last_key_at[None], []).extend(top_missing)
        elif first_header_at is not None:
            inserts.setdefault(first_header_at, []).extend(top_missing + ["\n"])
        else:
            inserts.setdefault(len(out), []).extend(top_missing)
    for name, table in desired.items():
        if not isinstance(table, dict):
            continue
        missing = [f"{k} = {render_value(v)}\n" for k, v in table.items()
                   if k not in seen.get(name, set()) and not _same(v, defaults.get(name, {}).get(k))]
        if not missing:
            continue
        if name in last_key_at:
            inserts.setdefault(last_key_at[name], []).extend(missing)
        else:
            appended += ["\n", f"[{name}]\n", *missing]
    result: list[str] = []
    for i, line in enumerate(out + [""]):
        result.extend(inserts.get(i, []))
        result.append(line)
    text = "".join(result) + "".join(appended)
    return text


def has_comments(text: str) -> bool:
    """Whether saving with tomli-w would lose something a person wrote (a comment line or an inline one)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return True
        m = _KEY.match(line)
        if m:
            split = _split_value(m.group(4))
            if split and "#" in split[2]:
                return True
        elif _HEADER.match(line) and "#" in line:
            return True
    return False
