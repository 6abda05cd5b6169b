"""Dataset preview for the run builder: `python -m engine.train.preview PROFILE_TOML --json`.

Prints what the trainer would make of the profile's data: the format, row counts, bad rows with their
labels, token counts (total, length percentiles against max_seq_len, rows that would be truncated) and one
example rendered exactly as the model sees it (chat template applied, the trained character spans listed).

It is a separate process because it needs a tokenizer (transformers), which the dashboard never imports.
It never downloads: HF_HUB_OFFLINE is forced, so a model that is not on disk gives a clear error instead
of a long network timeout. Problems are reported in the JSON ("error", "stage"), exit status 0; a crash
is a non-zero exit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"          # before transformers is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ..data import DataError, load_data      # noqa: E402
from ..profile import ProfileError, load      # noqa: E402

SHOW_BAD = 20


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (an actual row length, not an interpolation)."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * q // 100))   # ceil(n q / 100)
    return sorted_values[int(rank) - 1]


def preview(profile, limit: int = 2000, example: int = 0) -> dict:
    out: dict = {"ok": False, "max_seq_len": profile.training.max_seq_len}
    try:
        report = load_data(profile.data)
    except DataError as exc:
        return {**out, "stage": "data", "error": str(exc)}
    out.update(format=report.format, detected=report.detected, sources=report.sources, rows=report.total_rows,
               train=len(report.train), eval=len(report.eval), bad_count=len(report.bad_rows),
               bad_rows=[list(b) for b in report.bad_rows[:SHOW_BAD]])
    try:
        from transformers import AutoTokenizer
        m = profile.model
        tokenizer = AutoTokenizer.from_pretrained(m.name_or_path, revision=m.revision,
                                                  trust_remote_code=m.trust_remote_code)
    except Exception as exc:  # missing files, offline, a broken tokenizer.json: all say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {**out, "stage": "tokenizer", "error": f"cannot load the tokenizer of {profile.model.name_or_path}: "
                                                      f"{first}"}
    from .tokenize import assistant_spans, ensure_chat_template, pack_text

    t = profile.training
    rows = report.train[:limit] if limit else report.train
    out["fallback_template"] = report.format != "text" and ensure_chat_template(tokenizer)
    try:
        if report.format == "text":
            out.update(_text_stats(tokenizer, rows, report, t.max_seq_len, pack_text))
        else:
            out.update(_chat_stats(tokenizer, rows, report, t, assistant_spans, example))
    except Exception as exc:  # a chat template that rejects the roles, a tokenizer error
        return {**out, "stage": "tokenize", "error": f"cannot render the rows with the chat template: {exc}"}
    out["ok"] = True
    return out


def _lengths(values: list[int], counted: int, total_rows: int, max_seq_len: int) -> dict:
    s = sorted(values)
    total = sum(s)
    return {"tokens": total if counted == total_rows else int(total * total_rows / max(counted, 1)),
            "tokens_exact": counted == total_rows, "counted": counted,
            "p50": percentile(s, 50), "p90": percentile(s, 90), "p99": percentile(s, 99), "max": s[-1] if s else 0,
            "over": sum(v > max_seq_len for v in s)}


def _chat_stats(tokenizer, rows, report, t, assistant_spans, example: int) -> dict:
    lengths, dropped = [], 0
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        lengths.append(n)
        if n > t.max_seq_len and t.completion_only_loss:
            # Truncated rows whose answers all lie beyond the cut are dropped by the trainer.
            full, spans = assistant_spans(tokenizer, row["messages"])
            cut = _cut_char(tokenizer, full, t.max_seq_len)
            dropped += not any(s < cut for s, _ in spans)
    out = _lengths(lengths, len(rows), len(report.train), t.max_seq_len)
    out["dropped"] = dropped
    if rows:
        row = rows[min(example, len(rows) - 1)]
        full, spans = assistant_spans(tokenizer, row["messages"])
        n = len(tokenizer(full, add_special_tokens=False)["input_ids"])
        out["example"] = {"index": min(example, len(rows) - 1), "text": full,
                          "spans": spans if t.completion_only_loss else [[0, len(full)]],
                          "cut_at": _cut_char(tokenizer, full, t.max_seq_len) if n > t.max_seq_len else None,
                          "tokens": n}
    return out


def _text_stats(tokenizer, rows, report, max_seq_len: int, pack_text) -> dict:
    lengths = [len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in rows]
    out = _lengths(lengths, len(rows), len(report.train), max_seq_len)
    packed = pack_text(tokenizer, [r["text"] for r in rows], max_seq_len)
    out["blocks"] = len(packed.rows)
    out["dropped"] = 0
    if packed.rows:
        block = packed.rows[0]["input_ids"]
        text = tokenizer.decode(block)
        out["example"] = {"index": 0, "text": text, "spans": [[0, len(text)]], "cut_at": None, "tokens": len(block),
                          "packed": True}
    return out


def _cut_char(tokenizer, text: str, max_tokens: int) -> int:
    """The character offset where truncation to max_tokens cuts the rendered text."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    return offsets[max_tokens - 1][1] if len(offsets) > max_tokens else len(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.preview")
    ap.add_argument("profile", help="a profile .toml file")
    ap.add_argument("--json", action="store_true", help="print JSON (what the run builder reads)")
    ap.add_argument("--limit", type=int, default=2000, help="rows tokenized for the statistics (0 = all)")
    ap.add_argument("--example", type=int, default=0, help="which training row to render")
    args = ap.parse_args(argv)
    try:
        profile = load(args.profile)
    except ProfileError as exc:
        result = {"ok": False, "stage": "profile", "error": str(exc)}
    else:
        result = preview(profile, args.limit, args.example)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
