"""Load a profile's data section into normalised train/eval rows with a report of what was found.

Each file's format is detected on its own (data.format = auto); a file whose rows are in more than one
format is an error that counts the rows of each. Rows that cannot be used are skipped and named; when more
than data.max_bad_fraction of all rows (default 10%) is unusable the data is refused as a whole, before any
model is loaded. `keep` bounds how many normalised rows are held (validate and preview count everything but
keep a sample), so a multi-gigabyte JSONL is streamed, never held whole.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TunetopError
from .formats import (FORMATS, REFUSED, BadRow, expected_columns, map_columns, normalise, placeholders,
                      row_format)
from .readers import SUFFIXES, ReadError, check_regular, read_path

SHOW_BAD_ROWS = 5
SHOW_REASONS = 5


class DataError(TunetopError):
    """The data cannot be used; the message names the file/row, the hint says what to do."""


@dataclass
class FileInfo:
    path: str
    format: str
    rows: int
    bad: int


@dataclass
class DataReport:
    format: str                     # one format, or "a+b" when files differ
    detected: bool                  # True when the format was auto-detected
    sources: list[str]
    train: list[dict]
    eval: list[dict]
    bad_rows: list[tuple[str, str]] = field(default_factory=list)   # (row label, reason)
    total_rows: int = 0
    files: list[FileInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_count: int = 0            # all usable training rows (train may hold only a sample when keep is set)
    eval_count: int = 0
    bad_count: int = 0

    def summary(self) -> str:
        how = "detected" if self.detected else "as set in the profile"
        per_file = ""
        if len(self.files) > 1:
            per_file = "".join(f"\n  {Path(f.path).name}: {f.format}, {f.rows} rows"
                               + (f" ({f.bad} skipped)" if f.bad else "") for f in self.files)
        text = (f"data: {self.format} format ({how}), {self.total_rows} rows from {', '.join(self.sources)}: "
                f"{self.train_count} train, {self.eval_count} eval, {self.bad_count} skipped") + per_file
        text += "".join(f"\n  skipped {label}: {why}" for label, why in self.bad_rows[:SHOW_BAD_ROWS])
        if self.bad_count > SHOW_BAD_ROWS:
            text += f"\n  ... and {self.bad_count - SHOW_BAD_ROWS} more"
        text += "".join(f"\n  warning: {w}" for w in self.warnings)
        return text

    def reasons(self) -> Counter:
        return Counter(_reason_kind(why) for _, why in self.bad_rows)


def load_data(data, fmt_override: str | None = None, keep: int | None = None) -> DataReport:
    """data: a profile's DataSection. Raises DataError when nothing usable is found, when a file mixes
    formats, or when more than data.max_bad_fraction of the rows is unusable."""
    paths = data.path if isinstance(data.path, list) else [data.path]
    if not paths or paths == [""]:
        raise DataError("data.path is empty", hint="point data.path at a dataset file (README: Data formats)")
    fmt_set = fmt_override or data.format
    columns = dict(getattr(data, "columns", {}) or {})
    reasoning = getattr(data, "reasoning", "keep")
    acc = _Accumulator(keep)
    files: list[FileInfo] = []
    for ref in paths:
        for label_src, rows, is_eval in _sources(ref, data.split, data.eval_split):
            info = _load_file(label_src, rows, fmt_set, columns, reasoning, acc, is_eval)
            if info is not None:
                files.append(info)
    total = acc.total
    if total == 0:
        raise DataError(f"{', '.join(map(str, paths))}: the dataset is empty",
                        hint="point data.path at a file with rows in it")
    formats = sorted({f.format for f in files if f.rows})
    if "text" in formats and len(formats) > 1:
        raise DataError(f"data.path mixes raw text ({', '.join(f.path for f in files if f.format == 'text')}) "
                        "with conversations", hint="train raw text and chat data in separate runs")
    fmt = "+".join(formats) if formats else (fmt_set if fmt_set != "auto" else "unknown")
    detected = fmt_set == "auto"
    if not acc.good_count and not acc.eval_good_count:
        shown = "; ".join(f"{label}: {why}" for label, why in acc.bad[:SHOW_BAD_ROWS])
        hint_fmt = formats[0] if formats else fmt_set
        raise DataError(f"{paths[0]}: no usable rows in the {fmt} format (0 of {total}): {shown}",
                        hint=(f"{hint_fmt} rows need {expected_columns(hint_fmt)}" if hint_fmt in FORMATS else
                              "check the rows")
                        + ("; set data.format if the format was detected wrongly" if detected else ""))
    _check_bad_share(acc, total, data, paths)

    train = acc.train
    evals = acc.evals
    train_count, eval_count = acc.good_count, acc.eval_good_count
    rng = random.Random(data.seed)
    rng.shuffle(train)
    if data.eval_fraction and not eval_count:
        n_eval = max(1, int(round(train_count * data.eval_fraction)))
        if n_eval >= train_count:
            raise DataError(f"{paths[0]}: only {train_count} usable rows, too few to hold out "
                            f"{data.eval_fraction:.0%} for evaluation", hint="lower data.eval_fraction")
        k = min(n_eval, len(train))
        evals, train = train[:k], train[k:]
        eval_count, train_count = n_eval, train_count - n_eval
    if data.max_samples:
        train = train[: data.max_samples]
        train_count = min(train_count, data.max_samples)
    warnings = []
    if acc.placeholder_rows:
        warnings.append(f"{acc.placeholder_rows} rows carry template placeholders such as "
                        f"{acc.placeholder_example[1]} (first at {acc.placeholder_example[0]}): "
                        "an unfilled prompt template is trained as written")
    return DataReport(format=fmt, detected=detected, sources=[str(p) for p in paths], train=train, eval=evals,
                      bad_rows=acc.bad[:200], total_rows=total, files=files, warnings=warnings,
                      train_count=train_count, eval_count=eval_count, bad_count=acc.bad_count)


class _Accumulator:
    def __init__(self, keep: int | None):
        self.keep = keep
        self.train: list[dict] = []
        self.evals: list[dict] = []
        self.bad: list[tuple[str, str]] = []
        self.bad_count = 0
        self.total = 0
        self.good_count = 0
        self.eval_good_count = 0
        self.placeholder_rows = 0
        self.placeholder_example: tuple[str, str] | None = None
        self.reasons: Counter = Counter()

    def good(self, label: str, row: dict, is_eval: bool) -> None:
        row["_label"] = label
        found = placeholders(row)
        if found:
            self.placeholder_rows += 1
            self.placeholder_example = self.placeholder_example or (label, found[0])
        target = self.evals if is_eval else self.train
        if self.keep is None or len(target) < self.keep:
            target.append(row)
        if is_eval:
            self.eval_good_count += 1
        else:
            self.good_count += 1

    def reject(self, label: str, why: str) -> None:
        self.bad_count += 1
        self.reasons[_reason_kind(why)] += 1
        if len(self.bad) < 200:
            self.bad.append((label, why))


def _load_file(src: str, rows, fmt_set: str, columns: dict, reasoning: str, acc: _Accumulator,
               is_eval: bool) -> FileInfo | None:
    """Stream one file's rows into the accumulator. The format of a file is that of its first
    identifiable rows; any later row in another format makes the whole file an error."""
    fmt = None if fmt_set == "auto" else fmt_set
    per_format: Counter = Counter()
    first_cols: list[str] | None = None
    n = bad = 0
    pending: list[tuple[str, dict]] = []      # rows seen before the format is known (auto)
    for label, value in rows:
        n += 1
        acc.total += 1
        if isinstance(value, str):
            acc.reject(label, value)
            bad += 1
            continue
        value = map_columns(value, columns)
        if first_cols is None:
            first_cols = sorted(value)
        kind = row_format(value)
        if kind:
            per_format[kind] += 1
            if kind in REFUSED and fmt_set != "auto" and per_format[kind] == 1 and n == 1:
                _refuse_unsupported(src, kind)
        if fmt_set == "auto":
            if fmt is None:
                if kind is None:
                    pending.append((label, value))
                    if len(pending) > 1000:
                        break
                    continue
                fmt = kind
                _refuse_unsupported(src, fmt)
                for plabel, pvalue in pending:
                    bad += _one(plabel, pvalue, fmt, reasoning, acc, is_eval)
                pending = []
            elif kind and kind != fmt:
                _mixed(src, per_format, rows)
        bad += _one(label, value, fmt, reasoning, acc, is_eval)
    if fmt is None:
        if not n:
            return None
        raise _cannot_tell(src, first_cols or [])
    return FileInfo(path=src, format=fmt, rows=n, bad=bad)


def _one(label: str, value: dict, fmt: str, reasoning: str, acc: _Accumulator, is_eval: bool) -> int:
    try:
        acc.good(label, normalise(value, fmt, reasoning), is_eval)
        return 0
    except BadRow as exc:
        acc.reject(label, str(exc))
        return 1


def _mixed(src: str, per_format: Counter, rest) -> None:
    for _, value in rest:       # count the whole file so the message gives real numbers
        if isinstance(value, dict) and (kind := row_format(value)):
            per_format[kind] += 1
    counts = ", ".join(f"{n} {fmt}" for fmt, n in per_format.most_common())
    raise DataError(f"{src}: the file mixes row formats ({counts} rows)",
                    hint="put each format in its own file (data.path can list several files)")


def _refuse_unsupported(src: str, fmt: str) -> None:
    if fmt == "preference":
        raise DataError(f"{src}: this is preference data (chosen/rejected pairs), which supervised fine-tuning "
                        "cannot use", hint="train it with a preference method (DPO/ORPO, not part of tunetop), or "
                        "keep only the chosen replies as messages or prompt/completion rows")
    if fmt == "kto":
        raise DataError(f"{src}: this is KTO data (completions labelled true/false), which supervised "
                        "fine-tuning cannot use", hint="train it with KTO (not part of tunetop), or keep only the "
                        "rows labelled true as prompt/completion rows")


_SYNONYMS = {
    "prompt": ("question", "query", "input", "instruction", "prompt", "problem", "human", "user", "request",
               "source", "context"),
    "completion": ("answer", "response", "output", "completion", "reply", "target", "solution", "assistant",
                   "gpt", "answers"),
    "messages": ("conversation", "conversations", "dialog", "dialogue", "chat", "turns", "messages", "history"),
    "text": ("content", "body", "document", "passage", "article", "sentence", "doc", "raw"),
}


def suggest_columns(cols: list[str]) -> str | None:
    """The `data.columns` line that would make these columns usable, when one can be guessed."""
    lower = {c.lower(): c for c in cols}

    def pick(role):
        return next((lower[s] for s in _SYNONYMS[role] if s in lower), None)
    prompt, completion = pick("prompt"), pick("completion")
    if prompt and completion and prompt != completion:
        return f'columns = {{ prompt = "{prompt}", completion = "{completion}" }}'
    conv = pick("messages")
    if conv:
        return f'columns = {{ messages = "{conv}" }}'
    text = pick("text")
    if text and len(cols) == 1:
        return f'columns = {{ text = "{text}" }}'
    return None


def _cannot_tell(src: str, cols: list[str]) -> DataError:
    guess = suggest_columns(cols)
    need = "; ".join(f"{f}: {expected_columns(f)}" for f in FORMATS)
    hint = (f"add this line to the [data] section: {guess}" if guess else
            f"map your columns with data.columns (e.g. columns = {{ prompt = \"question\", completion = "
            f"\"answer\" }}); rows need one of: {need}")
    return DataError(f"{src}: cannot tell the data format from its columns ({', '.join(cols) or 'none'})", hint=hint)


def _check_bad_share(acc: _Accumulator, total: int, data, paths) -> None:
    limit = getattr(data, "max_bad_fraction", 0.10)
    if acc.bad_count and acc.bad_count > limit * total:
        reasons = "; ".join(f"{n} x {why}" for why, n in acc.reasons.most_common(SHOW_REASONS))
        first = "; ".join(f"{label}: {why}" for label, why in acc.bad[:3])
        raise DataError(f"{acc.bad_count} of {total} rows ({acc.bad_count / total:.0%}) cannot be used, more than "
                        f"data.max_bad_fraction = {limit:g}: {reasons} (first: {first})",
                        hint="fix the rows, or raise data.max_bad_fraction to train on the usable rows")


def _reason_kind(why: str) -> str:
    """A reason without its row-specific details (indices, values), for counting reasons."""
    import re
    return re.sub(r"\[\d+\]", "[i]", why)[:120]


def _sources(ref: str, split: str, eval_split: str):
    """(label for messages, row iterator, is_eval) for each file behind one data.path entry."""
    path = Path(ref).expanduser()
    if path.exists() or path.is_symlink():
        try:
            check_regular(path)
        except ReadError as exc:
            raise DataError(exc.message, hint=exc.hint) from None
        if path.is_dir() and not any(p.suffix == ".txt" for p in path.iterdir()):
            data_files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
            if data_files:       # a folder of dataset files: each is its own source
                for f in data_files:
                    yield str(f), _guarded(f), False
                return
        yield str(path), _guarded(path), False
        return
    if (path.is_absolute() or ref.startswith((".", "~")) or ref.endswith("/") or ref.count("/") > 1
            or path.suffix.lower() in SUFFIXES):       # a hub id is "name" or "org/name"
        raise DataError(f"{ref}: no such file or folder",
                        hint="check data.path (relative paths are relative to the profile file)")
    yield ref, _hub(ref, split), False
    if eval_split:
        yield f"{ref}[{eval_split}]", _hub(ref, eval_split), True


def _guarded(path: Path):
    try:
        yield from read_path(path)
    except ReadError as exc:
        raise DataError(exc.message, hint=exc.hint) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})", hint="check the file's permissions") \
            from None


def _hub(name: str, split: str):
    """A hub dataset, from the local HF cache only when offline (no downloads at run time here)."""
    try:
        import datasets
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many types: missing, offline, bad split
        raise DataError(f'{name}: cannot load the hub dataset (split "{split}"): {str(exc).splitlines()[0]}',
                        hint="download it once with network access (it is then read from the HF cache), "
                        "or point data.path at a local file") from None
    for i, row in enumerate(ds):
        yield f"{name}[{i + 1}]", dict(row)
