"""Read raw rows from local files. Each row comes with a label a user can find it by ("file.jsonl:12").

Readers stream and bound what they hold, so odd input never hangs or fills memory:
- only regular files and folders are read: FIFOs, devices (/dev/zero, /dev/urandom), sockets and symlinks
  to them are refused before anything is opened (`check_regular`);
- JSONL and CSV are read a line at a time; one line (or CSV cell) over MAX_LINE_BYTES (64 MiB) is an error
  naming the file and the line;
- a .json file (one document) is parsed whole, so it is refused above MAX_JSON_BYTES (512 MiB) with a hint
  to convert it to JSON Lines;
- text must be UTF-8, with or without a byte-order mark; anything else is an error naming the file and the
  first line that is not UTF-8 (never U+FFFD replacement characters in the training data).
"""
from __future__ import annotations

import codecs
import csv
import json
import os
import stat
from pathlib import Path
from typing import Iterator

from ..errors import TunetopError

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")
MAX_LINE_BYTES = 64 * 1024 * 1024
MAX_JSON_BYTES = 512 * 1024 * 1024
MAX_TEXT_BYTES = 512 * 1024 * 1024
_BOM = codecs.BOM_UTF8


class ReadError(TunetopError):
    """A file that cannot be read at all (as opposed to a bad row inside it)."""


# A row is (label, value); value is a dict for a good row or a str explaining why the row is unreadable.
Row = tuple[str, "dict | str"]


def check_regular(path: Path, what: str = "data.path") -> None:
    """Refuse anything but a regular file or a folder (after following symlinks), without opening it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ReadError(f"{path}: cannot read ({exc.strerror or exc})", hint=f"check {what}") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    via = f" (a symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise ReadError(f"{path}{via} is {kind}, not a regular file or folder",
                    hint=f"point {what} at a dataset file or a folder of .txt files")


def read_path(path: Path) -> Iterator[Row]:
    check_regular(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt")
        if not files:
            raise ReadError(f"{path}: the folder holds no .txt files",
                            hint="put one .txt document per file in it, or point data.path at a dataset file")
        for f in files:
            check_regular(f)
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
        raise ReadError(f"{path}: unsupported file type {suffix or '(none)'}",
                        hint=f"use one of {', '.join(SUFFIXES)} or a folder of .txt files")


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"


def _not_utf8(path: Path, line: int, exc: UnicodeDecodeError) -> ReadError:
    return ReadError(f"{path}: line {line} is not UTF-8 text ({exc.reason} at byte {exc.start} of the line)",
                     hint="save the file as UTF-8 (for example `iconv -f cp1252 -t utf-8 IN > OUT`)")


def _read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise ReadError(f"{path}: {size / 2**20:.0f} MiB is too large for one text document "
                        f"(limit {MAX_TEXT_BYTES // 2**20} MiB)", hint="split it into several .txt files")
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        raise _not_utf8(path, line, UnicodeDecodeError("utf-8", data[start:exc.end], exc.start - start,
                                                       exc.end - start, exc.reason)) from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line, decoded strictly; a BOM on line 1 is dropped; bounded length."""
    with open(path, "rb") as f:
        n = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ReadError(f"{path}: line {n} is longer than {_size(MAX_LINE_BYTES)}",
                                hint="one row per line, each under the limit (is this really a JSON Lines file?)")
            if n == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, n, exc) from None


def _jsonl(path: Path) -> Iterator[Row]:
    for n, line in _lines(path):
        if not line.strip():
            continue
        label = f"{path.name}:{n}"
        try:
            value = json.loads(line)
        except RecursionError:
            yield label, "nested too deeply to read"
            continue
        except ValueError as exc:
            yield label, f"not valid JSON ({getattr(exc, 'msg', exc)})"
            continue
        yield label, value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"


def _json(path: Path) -> Iterator[Row]:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ReadError(f"{path}: {size / 2**20:.0f} MiB is too large to read as one JSON document "
                        f"(limit {MAX_JSON_BYTES // 2**20} MiB)",
                        hint="convert it to JSON Lines (.jsonl, one row per line), which is read a line at a time")
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        raise _not_utf8(path, line, UnicodeDecodeError("utf-8", data[start:exc.end], exc.start - start,
                                                       exc.end - start, exc.reason)) from None
    del data
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ReadError(f"{path}: nested too deeply to read", hint="check the file is a list of row objects") from None
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        line = getattr(exc, "lineno", None)
        if line is not None and "Extra data" in msg:
            # Looks like JSON Lines saved as .json: read it that way rather than refusing the file.
            yield from _jsonl(path)
            return
        raise ReadError(f"{path}: not valid JSON ({msg}{f' at line {line}' if line else ''})",
                        hint="fix the file, or save one JSON object per line as .jsonl") from None
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if len(lists) == 1 and not _looks_like_row(doc):
            doc = lists[0]           # {"data": [rows...]} (one list of rows inside an object)
        elif _looks_like_row(doc):
            doc = [doc]              # a single conversation object is one row
        else:
            raise ReadError(f"{path}: expected a JSON list of rows, an object holding one list of rows, or one "
                            f"row object (found an object with keys {', '.join(sorted(doc)[:8])})",
                            hint="save the rows as a JSON list or as JSON Lines")
    if not isinstance(doc, list):
        raise ReadError(f"{path}: expected a JSON list of rows, got {type(doc).__name__}",
                        hint="save the rows as a JSON list or as JSON Lines")
    for n, value in enumerate(doc, start=1):
        yield f"{path.name}[{n}]", value if isinstance(value, dict) else \
            f"expected a JSON object, got {type(value).__name__}"


def _looks_like_row(obj: dict) -> bool:
    from .formats import row_formats
    return bool(row_formats(obj))


def _csv(path: Path) -> Iterator[Row]:
    csv.field_size_limit(MAX_LINE_BYTES)
    lines = _csv_lines(path)
    reader = csv.DictReader(lines)
    try:
        for row in reader:
            # reader.line_num is the line the row ended on (1 = header), which is what an editor shows.
            label = f"{path.name}:{reader.line_num}"
            if None in row:
                yield label, "more cells than the header has columns"
            else:
                yield label, dict(row)
    except csv.Error as exc:
        raise ReadError(f"{path}: line {reader.line_num + 1}: {exc}"
                        + (f" (a cell over {_size(MAX_LINE_BYTES)})" if "field larger" in str(exc) else ""),
                        hint="check the quoting of that line; cells must be under the limit") from None


def _csv_lines(path: Path) -> Iterator[str]:
    for _, line in _lines(path):
        yield line


def _parquet(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ReadError(f"{path}: cannot read Parquet ({exc})", hint="check the file is a complete Parquet file") \
            from None
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):    # row groups stream: never the whole table at once
            for value in batch.to_pylist():
                n += 1
                yield f"{path.name}[{n}]", value
    except Exception as exc:
        raise ReadError(f"{path}: cannot read Parquet after row {n} ({exc})",
                        hint="check the file is a complete Parquet file") from None
