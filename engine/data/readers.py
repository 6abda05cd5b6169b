"""Read raw rows from local files. Each row comes with a label a user can find it by ("file.jsonl:12")."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


class ReadError(Exception):
    """A file that cannot be read at all (as opposed to a bad row inside it)."""


# A row is (label, value); value is a dict for a good row or a str explaining why the row is unreadable.
Row = tuple[str, "dict | str"]


def read_path(path: Path) -> Iterator[Row]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt")
        if not files:
            raise ReadError(f"{path}: the folder holds no .txt files")
        for f in files:
            yield f.name, {"text": _read_text(f)}
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _jsonl(path)
    elif suffix == ".json":
        yield from _json(path)
    elif suffix == ".csv":
        yield from _csv(path)
    elif suffix == ".parquet":
        yield from _parquet(path)
    elif suffix == ".txt":
        yield path.name, {"text": _read_text(path)}
    else:
        raise ReadError(f"{path}: unsupported file type {suffix or '(none)'}; "
                        f"use one of {', '.join(SUFFIXES)} or a folder of .txt files")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _jsonl(path: Path) -> Iterator[Row]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            label = f"{path.name}:{n}"
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield label, f"not valid JSON ({exc.msg})"
                continue
            yield label, value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"


def _json(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        line = getattr(exc, "lineno", None)
        if line is not None and "Extra data" in msg:
            # Looks like JSON Lines saved as .json: read it that way rather than refusing the file.
            yield from _jsonl(path)
            return
        raise ReadError(f"{path}: not valid JSON ({msg}{f' at line {line}' if line else ''})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ReadError(f"{path}: expected a JSON list of rows (or an object holding one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise ReadError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    for n, value in enumerate(data, start=1):
        yield f"{path.name}[{n}]", value if isinstance(value, dict) else \
            f"expected a JSON object, got {type(value).__name__}"


def _csv(path: Path) -> Iterator[Row]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            # reader.line_num is the line the row ended on (1 = header), which is what an editor shows.
            label = f"{path.name}:{reader.line_num}"
            if None in row:
                yield label, "more cells than the header has columns"
            else:
                yield label, dict(row)


def _parquet(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ReadError(f"{path}: cannot read Parquet ({exc})") from None
    for n, value in enumerate(table.to_pylist(), start=1):
        yield f"{path.name}[{n}]", value
