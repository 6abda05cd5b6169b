"""The token and template lines of a preview summary (the dict `python -m engine.train.preview --json`
ends with), in one wording for `tunetop preview` and `tunetop validate`. Torch-free: the CLI renders them."""
from __future__ import annotations


def token_lines(s: dict) -> list[str]:
    """Chat-template skips and notes, token counts per row, truncation and drops (train and eval)."""
    lines: list[str] = []
    if "template_skipped" in s:
        partial = "" if s.get("tokens_exact", True) else f" (of the first {s.get('counted')} train rows)"
        lines.append(f"chat template: {s['template_skipped']} train rows skipped{partial}"
                     + (f", {s['eval_template_skipped']} eval" if s.get("eval_template_skipped") else ""))
        lines += [f"  skipped {label}: {why}" for label, why in s.get("template_skipped_rows", [])[:5]]
        lines += [f"  {n} rows: {note}" for note, n in s.get("template_notes", {}).items()]
    if "p50" in s:
        lines.append(f"tokens: {s['tokens']:,}{'' if s.get('tokens_exact', True) else ' (estimated)'}; per row p50 "
                     f"{s['p50']}, p90 {s['p90']}, p99 {s['p99']}, max {s['max']} (max_seq_len {s['max_seq_len']})")
        if "blocks" in s:
            lines.append(f"packed into {s['blocks']} blocks of {s['max_seq_len']} tokens")
        else:
            lines.append(f"train: {s.get('truncated', 0)} rows truncated, {s.get('dropped', 0)} dropped (nothing left "
                         f"to learn after the cut); eval: {s.get('eval_truncated', 0)} truncated, "
                         f"{s.get('eval_dropped', 0)} dropped")
    if s.get("fallback_template"):
        lines.append("warning: the tokenizer has no chat template: tunetop's ChatML fallback is used")
    return lines
