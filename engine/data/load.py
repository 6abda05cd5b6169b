"""Load a profile's data section into normalised train/eval rows with a report of what was found."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from .formats import FORMATS, BadRow, detect_format, expected_columns, normalise
from .readers import ReadError, read_path

SHOW_BAD_ROWS = 5


class DataError(Exception):
    """The data cannot be used; str() names the file/row and what to do."""


@dataclass
class DataReport:
    format: str
    detected: bool                  # True when the format was auto-detected
    sources: list[str]
    train: list[dict]
    eval: list[dict]
    bad_rows: list[tuple[str, str]] = field(default_factory=list)   # (row label, reason)
    total_rows: int = 0

    def summary(self) -> str:
        how = "detected" if self.detected else "as set in the profile"
        text = (f"data: {self.format} format ({how}), {self.total_rows} rows from {', '.join(self.sources)}: "
                f"{len(self.train)} train, {len(self.eval)} eval, {len(self.bad_rows)} skipped")
        return text + "".join(f"\n  skipped {label}: {why}" for label, why in self.bad_rows[:SHOW_BAD_ROWS]) + (
            f"\n  ... and {len(self.bad_rows) - SHOW_BAD_ROWS} more" if len(self.bad_rows) > SHOW_BAD_ROWS else "")


def load_data(data, fmt_override: str | None = None) -> DataReport:
    """data: a profile's DataSection. Raises DataError when nothing usable is found."""
    paths = data.path if isinstance(data.path, list) else [data.path]
    raw: list[tuple[str, dict | str]] = []
    eval_raw: list[tuple[str, dict | str]] = []
    for p in paths:
        rows, eval_rows = _read_source(p, data.split, data.eval_split)
        raw += rows
        eval_raw += eval_rows
    if not raw:
        raise DataError(f"{', '.join(map(str, paths))}: the dataset is empty\n"
                        "  hint: point data.path at a file with rows in it")

    fmt = fmt_override or data.format
    detected = fmt == "auto"
    if detected:
        fmt = detect_format([v for _, v in raw if isinstance(v, dict)])
        if fmt is None:
            cols = next((sorted(v) for _, v in raw if isinstance(v, dict)), [])
            raise DataError(f"{paths[0]}: cannot tell the data format from its columns ({', '.join(cols) or 'none'})\n"
                            "  hint: rows need one of: " + "; ".join(f"{f}: {expected_columns(f)}" for f in FORMATS)
                            + '; or set data.format')

    train, bad = _normalise_all(raw, fmt)
    evals, eval_bad = _normalise_all(eval_raw, fmt)
    bad += eval_bad
    if not train:
        shown = "\n".join(f"  {label}: {why}" for label, why in bad[:SHOW_BAD_ROWS])
        raise DataError(f"{paths[0]}: no usable rows in the {fmt} format (0 of {len(raw)})\n{shown}\n"
                        f"  hint: {fmt} rows need {expected_columns(fmt)}"
                        + ("; set data.format if the format was detected wrongly" if detected else ""))

    rng = random.Random(data.seed)
    rng.shuffle(train)
    if data.eval_fraction and not evals:
        n_eval = max(1, int(round(len(train) * data.eval_fraction)))
        if n_eval >= len(train):
            raise DataError(f"{paths[0]}: only {len(train)} usable rows, too few to hold out "
                            f"{data.eval_fraction:.0%} for evaluation\n  hint: lower data.eval_fraction")
        evals, train = train[:n_eval], train[n_eval:]
    if data.max_samples:
        train = train[: data.max_samples]
    return DataReport(format=fmt, detected=detected, sources=[str(p) for p in paths], train=train, eval=evals,
                      bad_rows=bad, total_rows=len(raw) + len(eval_raw))


def _normalise_all(rows, fmt):
    good, bad = [], []
    for label, value in rows:
        if isinstance(value, str):
            bad.append((label, value))
            continue
        try:
            good.append(normalise(value, fmt))
        except BadRow as exc:
            bad.append((label, str(exc)))
    return good, bad


def _read_source(ref: str, split: str, eval_split: str):
    path = Path(ref).expanduser()
    if path.exists():
        try:
            return list(read_path(path)), []
        except ReadError as exc:
            raise DataError(f"{exc}") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if path.is_absolute() or ref.startswith((".", "~")) or path.suffix.lower() in (".json", ".jsonl", ".csv",
                                                                                    ".parquet", ".txt"):
        raise DataError(f"{ref}: no such file or folder\n  hint: check data.path (relative paths are "
                        "relative to the profile file)")
    return _hub(ref, split), (_hub(ref, eval_split) if eval_split else [])


def _hub(name: str, split: str):
    """A hub dataset, from the local HF cache only when offline (no downloads at run time here)."""
    try:
        import datasets
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many types: missing, offline, bad split
        raise DataError(f'{name}: cannot load the hub dataset (split "{split}"): {str(exc).splitlines()[0]}\n'
                        "  hint: download it once with network access (it is then read from the HF cache), "
                        "or point data.path at a local file") from None
    return [(f"{name}[{i + 1}]", dict(row)) for i, row in enumerate(ds)]
