"""Text typed in a form field <-> the value the profile holds, by the schema's `kind`.

The conversion only reads the text; whether the value is allowed (type, range, choices) is decided by the
validator's check_field, so the form and `tunetop validate` give the same message.
"""
from __future__ import annotations

import json
import math
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def to_text(value, kind: str) -> str:
    if isinstance(value, dict):
        # A TOML inline table ({ prompt = "question", response = "answer" }), as the file would hold it.
        return "{" + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        # The TOML array spelling (also what the hint shows), so a one-item list stays a list.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def from_text(text: str, kind: str):
    """The typed value; text that is not a number in a number field stays text (check_field refuses it)."""
    raw = text.strip()
    if kind == "int" or (kind == "int_or_auto" and raw != "auto"):
        try:
            return int(raw.replace("_", "")) if raw and raw.lstrip("+-").replace("_", "").isdigit() else raw
        except ValueError:
            return raw
    if kind == "int_or_auto":
        return raw
    if kind == "float":
        try:
            number = float(raw.replace("_", ""))
        except ValueError:
            return raw
        return number if math.isfinite(number) else raw   # nan and inf would slip past min/max
    if kind == "table":
        if not raw:
            return {}
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return raw           # check_field names what a table should look like
    if kind == "str_or_list" and raw.startswith("["):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return None          # check_field: "expected a string or a non-empty list of strings"
    if kind in ("str", "str_or_list") and raw != text:
        return raw               # stray spaces around a path or an id are never meant
    return text
