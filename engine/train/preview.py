"""Dataset preview: the rows exactly as trained. `python -m engine.train.preview PROFILE_TOML [options]`.

Three outputs, one analysis (the engine's own code path: engine.data, then the chat template and exact
masking of engine/train/masking.py, then the tokenizer):
  --json           one JSON object (what the run builder and `tunetop validate` read): format, per-file
                   formats, row counts, bad and template-skipped rows with reasons, warnings, token
                   percentiles, truncated/dropped rows for train and eval at max_seq_len, one example row.
  --jsonl          what `tunetop preview --json` prints: one JSON object per shown row
                   {"row", "messages", "text", "trained", "tokens", "truncated"} and a last {"summary": {...}}.
  (neither)        the human view of `tunetop preview`: rows with the trained part highlighted.

It is a separate process because it needs a tokenizer (transformers), which the dashboard never imports.
It never downloads: HF_HUB_OFFLINE is forced, so a model that is not on disk gives a clear error instead
of a long network timeout. With --json, problems are reported in the JSON ("error", "stage") with exit
status 0; otherwise an error prints `error: ...` and exits 2. A crash is a non-zero exit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"          # before transformers is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ..data import DataError, load_data      # noqa: E402
from ..data.preview_text import token_lines  # noqa: E402
from ..errors import TunetopError, render_text   # noqa: E402
from ..profile import ProfileError, load      # noqa: E402

SHOW_BAD = 20
KEEP_ROWS = 20000     # normalised rows held for the token statistics (counts cover every row)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (an actual row length, not an interpolation)."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * q // 100))   # ceil(n q / 100)
    return sorted_values[int(rank) - 1]


def analyse(profile, limit: int = 2000, show: int = 1):
    """(summary dict, shown row records). limit: rows tokenized for the statistics per split (0 = all);
    show: rows whose full record (text, spans) is kept for printing."""
    t, d = profile.training, profile.data
    out: dict = {"ok": False, "max_seq_len": t.max_seq_len}
    keep = max(limit, show) if limit else None
    try:
        report = load_data(d, keep=keep)
    except DataError as exc:
        return {**out, "stage": "data", "error": exc.message, "hint": exc.hint}, []
    out.update(format=report.format, detected=report.detected, sources=report.sources, rows=report.total_rows,
               train=report.train_count, eval=report.eval_count, bad_count=report.bad_count,
               bad_rows=[list(b) for b in report.bad_rows[:SHOW_BAD]], warnings=list(report.warnings),
               files=[{"path": f.path, "format": f.format, "rows": f.rows, "skipped": f.bad} for f in report.files])
    try:
        from transformers import AutoTokenizer
        m = profile.model
        tokenizer = AutoTokenizer.from_pretrained(m.name_or_path, revision=m.revision,
                                                  trust_remote_code=m.trust_remote_code)
    except Exception as exc:  # missing files, offline, a broken tokenizer.json: all say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {**out, "stage": "tokenizer", "error": f"cannot load the tokenizer of {profile.model.name_or_path}: "
                                                      f"{first}"}, []
    from .masking import ChatRenderer
    from .tokenize import ensure_chat_template, pack_text

    out["fallback_template"] = report.format != "text" and ensure_chat_template(tokenizer)
    if report.format == "text":
        rows = report.train[:limit] if limit else report.train
        out.update(_text_stats(tokenizer, rows, report.train_count, t.max_seq_len, pack_text))
        shown = [{"row": r.get("_label", ""), "messages": [], "text": r["text"], "trained": [[0, len(r["text"])]],
                  "tokens": None, "truncated": False} for r in report.train[:show]]
        out["ok"] = True
        return out, shown
    renderer = ChatRenderer(tokenizer, getattr(d, "reasoning", "keep"))
    shown = []
    for split, rows, count in (("train", report.train, report.train_count), ("eval", report.eval, report.eval_count)):
        rows = rows[:limit] if limit else rows
        stats = _chat_stats(tokenizer, renderer, rows, t, shown if split == "train" else None, show)
        lengths = sorted(stats.pop("lengths"))
        exact = len(rows) == count
        if split == "train":
            total = sum(lengths)
            out.update(tokens=total if exact else int(total * count / max(len(lengths), 1)), tokens_exact=exact,
                       counted=len(rows), p50=percentile(lengths, 50), p90=percentile(lengths, 90),
                       p99=percentile(lengths, 99), max=lengths[-1] if lengths else 0, over=stats["truncated"],
                       dropped=stats["dropped"], truncated=stats["truncated"],
                       template_skipped=len(stats["skipped"]),
                       template_skipped_rows=[list(s) for s in stats["skipped"][:SHOW_BAD]])
            if "example" in stats:
                out["example"] = stats["example"]
        else:
            out.update(eval_counted=len(rows), eval_truncated=stats["truncated"], eval_dropped=stats["dropped"],
                       eval_template_skipped=len(stats["skipped"]),
                       eval_template_skipped_rows=[list(s) for s in stats["skipped"][:SHOW_BAD]])
    out["template_notes"] = dict(renderer.notes)
    if out["counted"] and out["dropped"] + out["template_skipped"] >= out["counted"] and out["tokens_exact"]:
        # what the engine would stop on after tokenizing: say it now, so validate never calls this valid
        out.update(stage="data", error=f"no row has a trainable token after tokenizing at max_seq_len "
                   f"{t.max_seq_len} ({out['dropped']} rows dropped after the cut, {out['template_skipped']} "
                   "refused by the chat template)",
                   hint="raise training.max_seq_len or check the dataset's answers are not empty")
        return out, shown
    skipped = out["template_skipped"] + out.get("eval_template_skipped", 0)
    limit_share = getattr(d, "max_bad_fraction", 0.10)
    counted = out["counted"] + out.get("eval_counted", 0)
    if skipped and (report.bad_count + skipped) > limit_share * max(report.total_rows, 1) and counted:
        out.update(stage="template", error=f"{report.bad_count + skipped} of {report.total_rows} rows cannot be "
                   f"used (bad rows and rows the chat template refuses), more than data.max_bad_fraction = "
                   f"{limit_share:g}: " + "; ".join(f"{label}: {why}" for label, why in
                                                   out["template_skipped_rows"][:3]),
                   hint="fix the rows, use a model whose chat template accepts them, or raise "
                        "data.max_bad_fraction")
        return out, shown
    out["ok"] = True
    return out, shown


def preview(profile, limit: int = 2000, example: int = 0) -> dict:
    """The builder's summary (kept for the run builder's preview panel)."""
    return analyse(profile, limit, show=1)[0]


def _chat_stats(tokenizer, renderer, rows, t, shown, show: int) -> dict:
    from .masking import RowSkipped
    from .tokenize import mask_for
    lengths, truncated, dropped, skipped = [], 0, 0, []
    example = None
    for row in rows:
        label = row.get("_label", "")
        try:
            rendered = renderer.render(row["messages"], row.get("tools"))
        except RowSkipped as exc:
            skipped.append((label, str(exc)))
            continue
        text, spans = rendered.text, rendered.spans if t.completion_only_loss else [(0, len(rendered.text))]
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        n = len(offsets)
        lengths.append(n)
        cut = offsets[t.max_seq_len - 1][1] if n > t.max_seq_len else None
        if n > t.max_seq_len:
            truncated += 1
            if not any(mask_for(offsets[: t.max_seq_len], spans)):
                dropped += 1
        if example is None:
            example = {"index": 0, "text": text, "spans": [list(s) for s in spans], "cut_at": cut, "tokens": n}
        if shown is not None and len(shown) < show:
            shown.append({"row": label, "messages": _public(rendered.messages), "text": text,
                          "trained": [list(s) for s in spans], "tokens": n, "truncated": n > t.max_seq_len,
                          **({"cut_at": cut} if cut is not None else {})})
    out = {"lengths": lengths, "truncated": truncated, "dropped": dropped, "skipped": skipped}
    if example:
        out["example"] = example
    return out


def _public(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]


def _text_stats(tokenizer, rows, count: int, max_seq_len: int, pack_text) -> dict:
    lengths = sorted(len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in rows)
    total = sum(lengths)
    exact = len(rows) == count
    packed = pack_text(tokenizer, [r["text"] for r in rows], max_seq_len)
    out = {"tokens": total if exact else int(total * count / max(len(rows), 1)), "tokens_exact": exact,
           "counted": len(rows), "p50": percentile(lengths, 50), "p90": percentile(lengths, 90),
           "p99": percentile(lengths, 99), "max": lengths[-1] if lengths else 0,
           "over": sum(v > max_seq_len for v in lengths), "blocks": len(packed.rows), "dropped": 0,
           "truncated": 0, "template_skipped": 0, "template_notes": {}}
    if packed.rows:
        block = packed.rows[0]["input_ids"]
        text = tokenizer.decode(block)
        out["example"] = {"index": 0, "text": text, "spans": [[0, len(text)]], "cut_at": None, "tokens": len(block),
                          "packed": True}
    return out


# ---------------------------------------------------------------------------------------------- output

def summary_fields(s: dict) -> dict:
    """The documented --json summary: counts and reasons (README: "tunetop preview")."""
    keys = ("ok", "error", "hint", "format", "detected", "files", "rows", "train", "eval", "bad_count", "bad_rows",
            "template_skipped", "template_skipped_rows", "eval_template_skipped", "template_notes", "warnings",
            "max_seq_len", "truncated", "dropped", "eval_truncated", "eval_dropped", "counted", "tokens",
            "tokens_exact", "p50", "p90", "p99", "max", "fallback_template", "blocks")
    return {k: s[k] for k in keys if k in s}


def print_human(s: dict, shown: list[dict], color: bool) -> None:
    hi = ("\x1b[1;32;4m", "\x1b[0m") if color else ("«", "»")
    for r in shown:
        print(f"── {r['row']} · {r['tokens'] if r['tokens'] is not None else '?'} tokens"
              + (" · TRUNCATED at max_seq_len" if r["truncated"] else "") + " ──")
        text, pos, parts = r["text"], 0, []
        for a, b in r["trained"]:
            parts += [text[pos:a], hi[0] + text[a:b] + hi[1]]
            pos = b
        parts.append(text[pos:])
        print("".join(parts))
    print(f"── summary ({'highlighted' if color else '«…»'} = trained) ──")
    for line in summary_lines(s):
        print(line)


def summary_lines(s: dict) -> list[str]:
    lines = [f"format: {s.get('format')} ({'detected' if s.get('detected') else 'as set'}); {s.get('rows', 0)} rows: "
             f"{s.get('train', 0)} train, {s.get('eval', 0)} eval, {s.get('bad_count', 0)} skipped as bad"]
    if len(s.get("files", [])) > 1:
        lines += [f"  {f['path']}: {f['format']}, {f['rows']} rows" + (f", {f['skipped']} skipped" if f["skipped"]
                                                                      else "") for f in s["files"]]
    lines += [f"  skipped {label}: {why}" for label, why in s.get("bad_rows", [])[:5]]
    if s.get("bad_count", 0) > 5:
        lines.append(f"  ... and {s['bad_count'] - 5} more")
    lines += token_lines(s)
    lines += [f"warning: {w}" for w in s.get("warnings", [])]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.preview")
    ap.add_argument("profile", help="a profile .toml file")
    ap.add_argument("--json", action="store_true", help="one summary JSON object (the run builder, validate)")
    ap.add_argument("--jsonl", action="store_true", help="one JSON object per row, then {\"summary\": ...}")
    ap.add_argument("--rows", type=int, default=3, help="rows to show (human view and --jsonl)")
    ap.add_argument("--limit", type=int, default=2000, help="rows tokenized for the statistics (0 = all)")
    ap.add_argument("--example", type=int, default=0, help="(kept for compatibility)")
    args = ap.parse_args(argv)
    try:
        profile = load(args.profile)
    except ProfileError as exc:
        if args.json or args.jsonl:
            result = {"ok": False, "stage": "profile", "error": str(exc)}
            print(json.dumps({"summary": result} if args.jsonl else result))
            return 0 if args.json else 2
        print(render_text(exc), file=sys.stderr)
        return 2
    try:
        summary, shown = analyse(profile, args.limit, show=max(args.rows, 1) if not args.json else 1)
    except TunetopError as exc:
        summary, shown = {"ok": False, "stage": "data", "error": exc.message, "hint": exc.hint}, []
    if args.json:
        print(json.dumps(summary))
        return 0
    shown = shown[: args.rows]
    if args.jsonl:
        for r in shown:
            print(json.dumps({k: r[k] for k in ("row", "messages", "text", "trained", "tokens", "truncated")},
                             ensure_ascii=False))
        print(json.dumps({"summary": summary_fields(summary)}, ensure_ascii=False))
        return 0 if summary.get("ok") else 2
    if not summary.get("ok"):
        print(render_text(TunetopError(summary.get("error", "the preview failed"), hint=summary.get("hint", ""))),
              file=sys.stderr)
        return 2
    print_human(summary, shown, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:          # `... | head`: end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
